#!/bin/bash
# docs/results/shipped_calibration: eval of the shipped recipe's seed ensembles
# (plateau_80_fluid_skip_wh_ema seeds 0+1, folds 0 and 1, no flip; docs/results/campaign/ensembles)
# as pretrained/ predicts (--config.predict.smooth_sd_columns=6), at a commit whose eval also
# reports the expected calibration error over the model's input band (calibration.band): the
# committed ensemble runs predate it. Each fold is scored on its validation subjects, which
# neither member saw. Usage: run.sh COMMIT (run from its own worktree: clean provenance).
set -e
commit=${1:?usage: run.sh COMMIT}
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/shipped_calibration
ENS=$PWD/docs/results/campaign/ensembles
. /work/venv/bin/activate
wt=/work/wt_calibration
[ -d $wt ] || git worktree add -q --detach $wt $commit
for f in 0 1; do
  out=/work/exp/calibration/fold$f
  rm -rf $out
  (cd $wt && nice -n 5 python main.py --mode=eval \
      --workdir=$ENS/plateau_80_fluid_skip_wh_ema_fold${f}_noflip --output=$out \
      --config.predict.smooth_sd_columns=6 > /dev/null)
  mkdir -p $HERE/fold$f
  cp $out/metrics.json $out/eval_provenance.json $HERE/fold$f/
done
git worktree remove --force $wt
