#!/bin/bash
# docs/results/shipped_calibration: eval of the shipped recipe's seed ensembles
# (plateau_80_fluid_skip_wh_ema seeds 0+1, folds 0 and 1, no flip; docs/results/campaign/ensembles)
# as pretrained/ predicts (--config.predict.smooth_sd_columns=6), at a commit whose eval also
# reports the expected calibration error over the model's input band (calibration.band): the
# committed ensemble runs predate it. Each fold is scored on its validation subjects, which
# neither member saw. Usage: run.sh COMMIT [FOLD ...] (default folds 0 1; run from its own
# worktree: clean provenance). Folds 0-1 ran at c668a37; folds 2-3 were added 2026-12-06 with
# `run.sh 00d233b 2 3`, a commit whose eval also ranks the boundary errors by each boundary's
# position sd (calibration.position_sd_vs_error); the seed-1 members live on this machine only
# (/work/campaign/runs).
set -e
commit=${1:?usage: run.sh COMMIT [FOLD ...]}
shift
folds=${*:-0 1}
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/shipped_calibration
ENS=$PWD/docs/results/campaign/ensembles
. /work/venv/bin/activate
wt=/work/wt_calibration_$commit
[ -d $wt ] || git worktree add -q --detach $wt $commit
for f in $folds; do
  out=/work/exp/calibration/fold$f
  rm -rf $out
  (cd $wt && nice -n 5 python main.py --mode=eval \
      --workdir=$ENS/plateau_80_fluid_skip_wh_ema_fold${f}_noflip --output=$out \
      --config.predict.smooth_sd_columns=6 > /dev/null)
  mkdir -p $HERE/fold$f
  cp $out/metrics.json $out/eval_provenance.json $HERE/fold$f/
done
git worktree remove --force $wt
