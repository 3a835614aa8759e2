# docs/results/smoothing: scripts/smoothing_cv.py on the shared 2-core CPU (beside the campaign
# runner), 2026-12-04. P: the shipped members; H: the H200 fold models of wide_80_fluid_skip_wh
# (device campaign, not in the repository); C: the CPU campaign's fold models on this machine.
set -e
cd "$(dirname "$0")/../../.."
P=pretrained/members; H=/work/h200/s13/wh; C=/work/campaign/runs; E=/work/exp/pairs
DUKE=--config.data.duke_dir=../shared/data/duke_dme_chiu2015
rm -rf $E   # eval_ensemble.py writes a new ensemble folder each time
# 2-member ensembles (no flip) of a shipped member with another recipe's model of its fold
for f in 0 1 2 3; do
  python scripts/eval_ensemble.py --no_eval --no_flip --output=$E/wh_pair/fold${f}_pair \
      $P/fold${f}_seed0 $H/fold${f}_seed0
done
for f in 2 3; do
  python scripts/eval_ensemble.py --no_eval --no_flip --output=$E/skip_pair/fold${f}_pair \
      $P/fold${f}_seed0 $C/plateau_80_fluid_skip/fold${f}_seed0
done
nice python scripts/smoothing_cv.py --output=docs/results/smoothing/cv_pairs.json \
    --sds=0,2,4,6,8,12 $DUKE \
    --set=plateau_80_fluid+wide_80_fluid_skip_wh:$E/wh_pair/fold0_pair,$E/wh_pair/fold1_pair,$E/wh_pair/fold2_pair,$E/wh_pair/fold3_pair \
    --set=plateau_80_fluid+plateau_80_fluid_skip:$E/skip_pair/fold2_pair,$E/skip_pair/fold3_pair
nice python scripts/smoothing_cv.py --output=docs/results/smoothing/cv.json \
    --sds=0,2,4,6,8,12 $DUKE \
    --set=plateau_80_fluid:$P/fold0_seed0,$P/fold1_seed0,$P/fold2_seed0,$P/fold3_seed0 \
    --set=wide_80_fluid_skip_wh:$H/fold0_seed0,$H/fold1_seed0,$H/fold2_seed0,$H/fold3_seed0 \
    --set=plateau_80_fluid_skip:$C/plateau_80_fluid_skip/fold2_seed0,$C/plateau_80_fluid_skip/fold3_seed0 \
    --set=plateau_80_fluid_skip_wh:$C/plateau_80_fluid_skip_wh/fold0_seed0,$C/plateau_80_fluid_skip_wh/fold2_seed0 \
    --set=plateau_80_fluid_skip_wh_fcw5:$C/plateau_80_fluid_skip_wh_fcw5/fold0_seed0 \
    --set=plateau_80_fluid_skip_wh_fw03:$C/plateau_80_fluid_skip_wh_fw03/fold0_seed0
