#!/bin/bash
# docs/results/boundary_offsets: a post-processing lever tried for issue 25 and not adopted.
# Each boundary of the smoothed ordered labelling (predict.smooth_sd_columns 6, as pretrained/)
# is moved by an offset in rows (grid -1.5..1.5, step 0.25; order kept by a running max), the
# labels redrawn as smooth_labelling draws them, and the literature mean layer Dice scored on the
# fold models' held-out scans. The 8 offsets are chosen by coordinate descent (2 sweeps) on the
# mean Dice of the other folds and applied to the held-out one (leave one fold out), as the
# smoothing sd is chosen (scripts/smoothing_cv.py). Fold models: the campaign's
# plateau_80_fluid_skip_wh_ema_rowscale (4 folds, seed 0, each on its validation pair) and the
# validation-free plateau_80_fluid_skip_wh_ema_noval seeds 1 and 2 (folds 1-3, each on the pair
# it never trained on; their seed-0 and fold-0 models are no longer on this machine).
# Outputs: rowscale_cv.json, noval_seeds_cv.json (per held-out fold: the offsets chosen on the
# others, Dice before and after, the gain; `all`: the offsets chosen on every fold) and logs.
# Run on 2026-12-07 from /work/exp/offsets on the shared 2-core CPU (AMD EPYC), at commit
# be94ab1 of octseg_jax (geometry.boundaries, smoothing_cv.fold_scans, evaluate.predict_all).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
EXP=/work/exp/offsets
DUKE=$(cd "$HERE/../../../../shared/data/duke_dme_chiu2015" && pwd)
. /work/venv/bin/activate
mkdir -p $EXP && cd $EXP
cp "$HERE/predict_cache.py" "$HERE/explore.py" .
for spec in "0 01 02" "1 03 04" "2 05 06" "3 07 08"; do
  set -- $spec
  mkdir -p pair$1
  ln -sf $DUKE/subject_$2.npz $DUKE/subject_$3.npz pair$1/
done
python predict_cache.py rowscale/fold{0,1,2,3}_seed0 noval/fold{1,2,3}_seed1 noval/fold{1,2,3}_seed2
for s in 1 2; do
  for f in 1 2 3; do
    ln -sf cache_noval_fold${f}_seed$s.npz cache_novalS${s}_fold${f}_seed$s.npz
  done
done
python explore.py rowscale > explore_rowscale.log
python explore.py novalS1 novalS2 > explore_noval.log
cp explore_rowscale.json "$HERE/rowscale_cv.json"
cp explore_novalS1_novalS2.json "$HERE/noval_seeds_cv.json"
cp explore_rowscale.log "$HERE/rowscale_cv.log"
cp explore_noval.log "$HERE/noval_seeds_cv.log"
