# docs/results/smoothing: scripts/smoothing_cv.py on the shared 2-core CPU (beside the campaign
# runner). First run 2026-12-04; rerun 2026-12-05 when plateau_80_fluid_skip_wh_ema replaced the
# shipped members. P: the shipped members (plateau_80_fluid_skip_wh_ema); H: the H200 fold models
# of wide_80_fluid_skip_wh (device campaign, not in the repository); C: the CPU campaign's fold
# models on this machine; O: the members shipped before (plateau_80_fluid), from git.
set -e
cd "$(dirname "$0")/../../.."
P=pretrained/members; H=/work/h200/s13/wh; C=/work/campaign/runs; E=/work/exp/pairs
O=/work/exp/previous_members
rm -rf $O && mkdir -p $O
git archive 1b4067e pretrained/members | tar -x -C $O --strip-components=2
DUKE=--config.data.duke_dir=../shared/data/duke_dme_chiu2015
folds() {  # folds RECIPE_DIR F... -> DIR/foldF_seed0,...
  local d=$1; shift; local out=""
  for f in "$@"; do out="$out${out:+,}$d/fold${f}_seed0"; done; echo "$out"
}
pairs() {  # pairs NAME DIR_A DIR_B F...: 2-member ensembles (no flip) of fold F's models
  local n=$1 a=$2 b=$3; shift 3; local out=""
  for f in "$@"; do
    python scripts/eval_ensemble.py --no_eval --no_flip --output=$E/$n/fold${f}_pair \
        $a/fold${f}_seed0 $b/fold${f}_seed0 > /dev/null
    out="$out${out:+,}$E/$n/fold${f}_pair"
  done; echo "$out"
}
rm -rf $E   # eval_ensemble.py writes a new ensemble folder each time
EMA_WH=$(pairs ema_wh $P $H 0 1 2 3)
OLD_WH=$(pairs old_wh $O $H 0 1 2 3)
OLD_SKIP=$(pairs old_skip $O $C/plateau_80_fluid_skip 2 3)
nice python scripts/smoothing_cv.py --output=docs/results/smoothing/cv_pairs.json \
    --sds=0,2,4,6,8,12 $DUKE \
    --set=plateau_80_fluid_skip_wh_ema+wide_80_fluid_skip_wh:$EMA_WH \
    --set=plateau_80_fluid+wide_80_fluid_skip_wh:$OLD_WH \
    --set=plateau_80_fluid+plateau_80_fluid_skip:$OLD_SKIP
nice python scripts/smoothing_cv.py --output=docs/results/smoothing/cv.json \
    --sds=0,2,4,6,8,12 $DUKE \
    --set=plateau_80_fluid_skip_wh_ema:$(folds $P 0 1 2 3) \
    --set=plateau_80_fluid:$(folds $O 0 1 2 3) \
    --set=wide_80_fluid_skip_wh:$(folds $H 0 1 2 3) \
    --set=plateau_80_fluid_skip:$(folds $C/plateau_80_fluid_skip 2 3) \
    --set=plateau_80_fluid_skip_wh:$(folds $C/plateau_80_fluid_skip_wh 0 1 2 3) \
    --set=plateau_80_fluid_skip_wh_fcw5:$(folds $C/plateau_80_fluid_skip_wh_fcw5 0 2) \
    --set=plateau_80_fluid_skip_wh_fw03:$(folds $C/plateau_80_fluid_skip_wh_fw03 0 2)
