#!/bin/bash
# docs/results/uncertainty_smoothing: eval of the shipped recipe's seed ensembles
# (plateau_80_fluid_skip_wh_ema seeds 0+1, folds 0 and 1, no flip; docs/results/campaign/ensembles)
# with the shipped boundary smoothing (--config.predict.smooth_sd_columns=6), before (90623d4:
# the spread of the members' unsmoothed boundaries) and after (bef5de6: of their boundaries
# smoothed as the written ones are; its eval also splits the error by the uncertain flag, in the
# columns predict measures) the change. Same scans, same smoothed prediction: only the spread
# differs. 2026-12-05, shared 2-core CPU beside the campaign runner, each commit run from its
# own worktree (clean provenance).
set -e
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/uncertainty_smoothing
ENS=$PWD/docs/results/campaign/ensembles
. /work/venv/bin/activate
for pair in before:90623d4 after:bef5de6; do
  name=${pair%%:*}; commit=${pair##*:}
  wt=/work/wt_unc_$name
  [ -d $wt ] || git worktree add -q --detach $wt $commit
  for f in 0 1; do
    out=/work/exp/unc/$name/fold$f
    rm -rf $out
    (cd $wt && nice -n 5 python main.py --mode=eval \
        --workdir=$ENS/plateau_80_fluid_skip_wh_ema_fold${f}_noflip --output=$out \
        --config.predict.smooth_sd_columns=6 > /dev/null)
    mkdir -p $HERE/$name/fold$f
    cp $out/metrics.json $out/eval_provenance.json $HERE/$name/fold$f/
  done
  git worktree remove --force $wt
done
