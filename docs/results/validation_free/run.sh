#!/bin/bash
# docs/results/validation_free: pretrained/'s settings chosen again on the validation-free fold
# models (plateau_80_fluid_skip_wh_ema_noval, seed 0; docs/results.md section 11), each on the
# held-out pair it never trained on:
#   smoothing_cv.json: the boundary smoothing sd (scripts/smoothing_cv.py, --input of each
#     fold's pair), chosen leave-one-fold-out as for pretrained/'s members (../smoothing);
#   eval_foldF/: each fold model's eval of its pair (main.py --mode=eval --input) at that sd;
#   flag_threshold_cv.json: the single model's position-sd flag threshold chosen on those evals
#     (scripts/flag_threshold_cv.py), as ../flag_threshold's `members` set.
# The fold models stay on this machine (/work/campaign/runs, the campaign runner's workdirs);
# their results are in ../campaign/plateau_80_fluid_skip_wh_ema_noval. From a worktree at COMMIT
# (clean provenance), nice -n 5 beside the campaign runner on the shared 2-core CPU.
# Usage: run.sh COMMIT
set -euo pipefail
COMMIT=${1:?usage: run.sh COMMIT}
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/validation_free
RUNS=/work/campaign/runs/plateau_80_fluid_skip_wh_ema_noval
DUKE=$(cd ../shared/data/duke_dme_chiu2015 && pwd)
EXP=/work/exp/validation_free
. /work/venv/bin/activate
WT=/work/wt_validation_free
[ -d $WT ] || git worktree add -q --detach $WT "$COMMIT"
[ "$(git -C $WT rev-parse HEAD)" = "$(git rev-parse "$COMMIT^{commit}")" ]
rm -rf $EXP && mkdir -p $EXP
models="" pairs=""
for spec in "0 01 02" "1 03 04" "2 05 06" "3 07 08"; do
  set -- $spec
  mkdir -p $EXP/pair$1
  ln -s $DUKE/subject_$2.npz $DUKE/subject_$3.npz $EXP/pair$1/
  models="$models${models:+,}$RUNS/fold$1_seed0" pairs="$pairs${pairs:+,}$EXP/pair$1"
done
(cd $WT && nice -n 5 python scripts/smoothing_cv.py --output=$HERE/smoothing_cv.json \
    --sds=0,2,4,6,8,12 --set=noval:$models --input=noval:$pairs)
SD=$(python -c "import json, sys; print(json.load(sys.stdin)['sets']['noval']['cv']['chosen_sd'])" \
     < $HERE/smoothing_cv.json)
metrics=""
for f in 0 1 2 3; do
  out=$EXP/eval_fold$f
  (cd $WT && nice -n 5 python main.py --mode=eval --workdir=$RUNS/fold${f}_seed0 \
      --input=$EXP/pair$f --output=$out --config.predict.smooth_sd_columns=$SD > /dev/null)
  mkdir -p $HERE/eval_fold$f
  cp $out/metrics.json $out/eval_provenance.json $HERE/eval_fold$f/
  metrics="$metrics${metrics:+,}$HERE/eval_fold$f/metrics.json"
done
(cd $WT && python scripts/flag_threshold_cv.py --output=$HERE/flag_threshold_cv.json \
    --set=noval:$metrics)
git worktree remove --force $WT
