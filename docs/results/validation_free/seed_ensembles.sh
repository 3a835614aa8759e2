#!/bin/bash
# docs/results/validation_free, continued: the ensemble's uncertain-column flag (the members'
# spread, predict.uncertain_um) chosen again on the validation-free recipe
# (plateau_80_fluid_skip_wh_ema_noval), as ../flag_threshold chose it for pretrained/'s members:
#   ensembles/foldF/ensemble.json: fold F's 2-member seed ensemble (seeds A and B, no flip;
#     scripts/eval_ensemble.py --no_eval) of the fold models the campaign keeps with their
#     results (keep_model): seeds 1 and 2 on folds 1-3; fold 0's, seeds 0 and 1, were read
#     before models were kept, from this machine's runner (configs/campaign.json says why);
#   ensemble_foldF/: its eval (main.py --mode=eval --input) on the held-out pair neither member
#     trained on, at the smoothing sd run.sh chose (its smoothing_cv.json); seedA_foldF/ and
#     seedB_foldF/: each member's own eval there, at the same commit, so that the averaging gain
#     is read on smoothed outputs on both sides;
#   seed_ensembles_cv.json: scripts/flag_threshold_cv.py over those evals (seed_ensembles: the
#     members' spread and the position sd of their average) beside run.sh's single-model evals
#     (noval: the position sd).
# Ensembles of N > 2 seeds (pretrained/'s own size, 4) are written the same way under
# membersN/ (membersN/ensembles/foldF, membersN/ensemble_foldF, membersN/seedS_foldF), and
# their flags join seed_ensembles_cv.json as the set seed_ensembles_N.
# Usage: seed_ensembles.sh COMMIT [FOLD:A,B[,C...] ...] (evaluates those folds' ensembles of
# seeds A < B < ..., whose models must be kept; default none), then the cross-validation over
# every fold evaluated so far.
# From a worktree at COMMIT, nice -n 5 beside the campaign runner on the shared 2-core CPU.
set -euo pipefail
COMMIT=${1:?usage: seed_ensembles.sh COMMIT [FOLD:A,B ...]}
shift
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/validation_free
RUNS=$PWD/docs/results/campaign/plateau_80_fluid_skip_wh_ema_noval
DUKE=$(cd ../shared/data/duke_dme_chiu2015 && pwd)
EXP=/work/exp/validation_free_ensembles
. /work/venv/bin/activate
SD=$(python -c "import json, sys; print(json.load(sys.stdin)['sets']['noval']['cv']['chosen_sd'])" \
     < $HERE/smoothing_cv.json)
pairs=("01 02" "03 04" "05 06" "07 08")
for arg in "$@"; do                                  # every FOLD:A,B checked before any work
  [[ $arg =~ ^[0-3]:[0-9]+(,[0-9]+)+$ ]] || { echo "$arg: not FOLD:A,B[,C...] (fold 0-3)" >&2
                                               exit 2; }
  IFS=, read -r -a seeds <<< "${arg#*:}"
  for ((i = 1; i < ${#seeds[@]}; i++)); do
    (( seeds[i - 1] < seeds[i] )) || { echo "$arg: seeds A < B < ..., as doc_tables reads them" >&2
                                       exit 2; }
  done
  for s in "${seeds[@]}"; do
    model=$RUNS/fold${arg%%:*}_seed$s
    [ -d $model/best ] || { echo "$model: no kept model" >&2; exit 2; }
  done
done
if [ $# -gt 0 ]; then
  WT=/work/wt_validation_free_ensembles
  [ -d $WT ] || git worktree add -q --detach $WT "$COMMIT"
  [ "$(git -C $WT rev-parse HEAD)" = "$(git rev-parse "$COMMIT^{commit}")" ]
  for arg in "$@"; do
    f=${arg%%:*}
    IFS=, read -r -a seeds <<< "${arg#*:}"
    n=${#seeds[@]}
    exp=$EXP/members$n dest=$HERE
    (( n == 2 )) || dest=$HERE/members$n
    set -- ${pairs[$f]}
    rm -rf $exp/pair$f $exp/ensemble_fold$f $exp/seed*_fold$f $dest/ensemble_fold$f \
        $dest/seed*_fold$f
    mkdir -p $exp/pair$f
    ln -s $DUKE/subject_$1.npz $DUKE/subject_$2.npz $exp/pair$f/
    rm -rf $dest/ensembles/fold$f
    members=() outs=(ensemble_fold$f)
    for seed in "${seeds[@]}"; do
      members+=($RUNS/fold${f}_seed$seed) outs+=(seed${seed}_fold$f)
    done
    (cd $WT && python scripts/eval_ensemble.py --no_eval --no_flip --output=$dest/ensembles/fold$f \
        "${members[@]}")
    (cd $WT && nice -n 5 python main.py --mode=eval --workdir=$dest/ensembles/fold$f \
        --input=$exp/pair$f --output=$exp/ensemble_fold$f \
        --config.predict.smooth_sd_columns=$SD > /dev/null)
    for seed in "${seeds[@]}"; do
      (cd $WT && nice -n 5 python main.py --mode=eval --workdir=$RUNS/fold${f}_seed$seed \
          --input=$exp/pair$f --output=$exp/seed${seed}_fold$f \
          --config.predict.smooth_sd_columns=$SD > /dev/null)
    done
    for out in "${outs[@]}"; do
      mkdir -p $dest/$out
      cp $exp/$out/metrics.json $exp/$out/eval_provenance.json $dest/$out/
    done
  done
  git worktree remove --force $WT
fi
sets=()
specs=("noval:$HERE/eval_fold" "seed_ensembles:$HERE/ensemble_fold")
for d in $HERE/members[0-9]*; do
  [ -d $d ] && specs+=("seed_ensembles_${d##*members}:$d/ensemble_fold")
done
for s in "${specs[@]}"; do
  files=$(ls -d ${s#*:}[0-9]/metrics.json 2>/dev/null | paste -sd, -)
  [ -n "$files" ] && sets+=("--set=${s%%:*}:$files")
done
python scripts/flag_threshold_cv.py --output=$HERE/seed_ensembles_cv.json "${sets[@]}"
