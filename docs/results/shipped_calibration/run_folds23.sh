#!/bin/bash
# docs/results/shipped_calibration: eval of the shipped recipe's seed ensembles
# (plateau_80_fluid_skip_wh_ema seeds 0+1, folds 2 and 3, no flip; folds 0 and 1: run.sh;
# docs/results/campaign/ensembles) as pretrained/ predicts (--config.predict.smooth_sd_columns=6).
# Added 2026-12-06 at a commit whose eval also ranks the boundary errors by each boundary's
# position sd (calibration.position_sd_vs_error); their seed-1 members live on this machine only
# (/work/campaign/runs), as folds 0-1's did when run.sh ran. Each fold is scored on its
# validation subjects, which neither member saw. Usage: run_folds23.sh COMMIT (run from its own
# worktree: clean provenance).
set -e
commit=${1:?usage: run.sh COMMIT}
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/shipped_calibration
ENS=$PWD/docs/results/campaign/ensembles
. /work/venv/bin/activate
wt=/work/wt_calibration23
[ -d $wt ] || git worktree add -q --detach $wt $commit
for f in 2 3; do
  out=/work/exp/calibration/fold$f
  rm -rf $out
  (cd $wt && nice -n 5 python main.py --mode=eval \
      --workdir=$ENS/plateau_80_fluid_skip_wh_ema_fold${f}_noflip --output=$out \
      --config.predict.smooth_sd_columns=6 > /dev/null)
  mkdir -p $HERE/fold$f
  cp $out/metrics.json $out/eval_provenance.json $HERE/fold$f/
done
git worktree remove --force $wt
