#!/bin/bash
# The held-out CAM comparison repeated on the shipped members (pretrained/members, since
# 2026-12-05 plateau_80_fluid_skip_wh_ema, whose skip connections change what the decoder layers
# see): each member explains the same 2 B-scans of its own validation subjects as the base fold
# models of ../explain_heldout/, for the default's candidates only (Grad-CAM and HiResCAM at
# enc3_conv1, dec3_conv1, dec2_conv1; ROAD and the randomisation check), from a worktree pinned at
# the commit given (argument 1), nice -n 10, beside the campaign runner (times are no measurement).
set -euo pipefail
COMMIT=${1:?usage: run.sh COMMIT}
WT=/work/wt_cams_shipped
git -C /work/main worktree remove --force $WT 2>/dev/null || true
git -C /work/main worktree add -f --detach $WT "$COMMIT"
cd $WT
. /work/venv/bin/activate
D=../shared/data/duke_dme_chiu2015
KEEP=/work/main/docs/results/cpu_2core/explain_heldout_shipped
for spec in "0 subject_01 subject_02" "1 subject_03 subject_04" "2 subject_05 subject_06" \
            "3 subject_07 subject_08"; do
  set -- $spec
  out=/work/cams_shipped/fold$1
  if [ -f $out/done ]; then continue; fi
  rm -rf $out; mkdir -p $out
  /usr/bin/time -v nice -n 10 python scripts/compare_cams.py \
     --workdir=pretrained/members/fold$1_seed0 --output=$out --scans=$D/$2.npz:5,$D/$3.npz:5 \
     --methods=gradcam,hirescam --layers=enc3_conv1,dec3_conv1,dec2_conv1 \
     --sanity_layers=enc3_conv1,dec3_conv1,dec2_conv1 >> $out/run.log 2>&1
  mkdir -p $KEEP/fold$1
  cp $out/compare_cams.json $out/compare_cams.md $out/run.log $KEEP/fold$1/
  touch $out/done
done
