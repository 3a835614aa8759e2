#!/bin/bash
# docs/results/flag_threshold: the `uncertain` flag's threshold chosen by cross-validation
# (scripts/flag_threshold_cv.py) on held-out evals of the shipped recipe
# (plateau_80_fluid_skip_wh_ema), scored as pretrained/ predicts (smoothing sd 6 columns):
#   members: each shipped member alone (../position_sd/member_foldF, its run.sh): the position
#     sd, the flag of a single model (--config.predict.members=1);
#   seed_ensembles: the 2-member seed ensembles (seed 0 = the shipped member, seed 1 from this
#     machine's campaign runs; ensembles/foldF/ensemble.json, no flip), evaluated here at
#     COMMIT: the members' spread (an ensemble's flag) and the position sd of their average.
# Usage: run.sh COMMIT [FOLD ...] (evaluates the seed ensembles of those folds, default none),
# then the cross-validation over every fold evaluated so far. Shared 2-core CPU.
set -e
commit=${1:?usage: run.sh COMMIT [FOLD ...]}
shift
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/flag_threshold
. /work/venv/bin/activate
if [ $# -gt 0 ]; then
  wt=/work/wt_flag_threshold
  [ -d $wt ] || git worktree add -q --detach $wt $commit
  for f in "$@"; do
    out=/work/exp/flag_threshold/ensemble_fold$f
    rm -rf $out
    (cd $wt && nice -n 5 python main.py --mode=eval --workdir=$HERE/ensembles/fold$f \
        --output=$out --config.predict.smooth_sd_columns=6 > /dev/null)
    mkdir -p $HERE/ensemble_fold$f
    cp $out/metrics.json $out/eval_provenance.json $HERE/ensemble_fold$f/
  done
  git worktree remove --force $wt
fi
sets=()
for s in "members:docs/results/position_sd/member_fold" "seed_ensembles:$HERE/ensemble_fold"; do
  files=$(ls -d ${s#*:}[0-9]/metrics.json 2>/dev/null | paste -sd, -)
  [ -n "$files" ] && sets+=("--set=${s%%:*}:$files")
done
python scripts/flag_threshold_cv.py --output=$HERE/cv.json "${sets[@]}"
