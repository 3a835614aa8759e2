#!/bin/bash
# docs/results/position_sd: each shipped member (pretrained/members, plateau_80_fluid_skip_wh_ema
# seed 0) alone, scored by eval on its own validation subjects (never trained on) as pretrained/
# predicts (--config.predict.smooth_sd_columns=6): how well each boundary's position sd in the
# member's probabilities (calibration.position_sd_vs_error) ranks the boundary errors, the one
# uncertainty a single model (--config.predict.members=1) has. The seed ensembles' reading, with
# the members' spread beside it: ../shipped_calibration/fold{2,3} (its run.sh).
# Usage: run.sh COMMIT (run from its own worktree: clean provenance; shared 2-core CPU).
set -e
commit=${1:?usage: run.sh COMMIT}
cd "$(dirname "$0")/../../.."
HERE=$PWD/docs/results/position_sd
. /work/venv/bin/activate
wt=/work/wt_position_sd
[ -d $wt ] || git worktree add -q --detach $wt $commit
for f in 0 1 2 3; do
  out=/work/exp/position_sd/member_fold$f
  rm -rf $out
  (cd $wt && nice -n 5 python main.py --mode=eval --workdir=pretrained/members/fold${f}_seed0 \
      --output=$out --config.predict.smooth_sd_columns=6 > /dev/null)
  mkdir -p $HERE/member_fold$f
  cp $out/metrics.json $out/eval_provenance.json $HERE/member_fold$f/
done
git worktree remove --force $wt
