#!/bin/bash
# The held-out CAM comparison of ../explain_heldout_shipped_6scans (its run.sh) repeated on the
# validation-free fold models (plateau_80_fluid_skip_wh_ema_noval seed 0, docs/results.md
# section 11), which the explanation of a pretrained/ trained on all 8 subjects is chosen again
# on: each fold model explains B-scans 5, 2 and 8 (0-based, of the 11 annotated) of each of the
# two subjects it never trained on, with the same candidates (Grad-CAM and HiResCAM at
# enc3_conv1, dec3_conv1, dec2_conv1; ROAD on every scan, the randomisation check on the first).
# The fold models stay on this machine (/work/campaign/runs, the campaign runner's workdirs).
# From a worktree pinned at the commit given (argument 1), nice -n 10, beside the campaign
# runner (times are no measurement). Resumable: a finished fold is kept.
set -euo pipefail
COMMIT=${1:?usage: run.sh COMMIT}
WT=/work/wt_cams_noval6
if [ ! -d $WT ]; then git -C /work/main worktree add -f --detach $WT "$COMMIT"; fi
[ "$(git -C $WT rev-parse HEAD)" = "$(git -C /work/main rev-parse "$COMMIT^{commit}")" ]
cd $WT
. /work/venv/bin/activate
D=$(cd /work/main/../shared/data/duke_dme_chiu2015 && pwd)
RUNS=/work/campaign/runs/plateau_80_fluid_skip_wh_ema_noval
KEEP=/work/main/docs/results/cpu_2core/explain_heldout_noval_6scans
for spec in "0 subject_01 subject_02" "1 subject_03 subject_04" "2 subject_05 subject_06" \
            "3 subject_07 subject_08"; do
  set -- $spec
  out=/work/cams_noval6/fold$1
  if [ -f $out/done ]; then continue; fi
  mkdir -p $out
  scans=$D/$2.npz:5,$D/$3.npz:5,$D/$2.npz:2,$D/$3.npz:2,$D/$2.npz:8,$D/$3.npz:8
  /usr/bin/time -v nice -n 10 python scripts/compare_cams.py --resume \
     --workdir=$RUNS/fold$1_seed0 --output=$out --scans=$scans \
     --methods=gradcam,hirescam --layers=enc3_conv1,dec3_conv1,dec2_conv1 \
     --sanity_layers=enc3_conv1,dec3_conv1,dec2_conv1 >> $out/run.log 2>&1
  mkdir -p $KEEP/fold$1
  cp $out/compare_cams.json $out/compare_cams.md $out/run.log $KEEP/fold$1/
  touch $out/done
done
