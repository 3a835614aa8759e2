#!/bin/bash
# Held-out CAM comparison (issue 30): each campaign base fold model explains 2 scans of its
# own validation subjects (never trained on). Runs from the pinned worktree /work/wt_cams.
cd /work/wt_cams
. /work/venv/bin/activate
D=../shared/data/duke_dme_chiu2015
for spec in "0 subject_01 subject_02" "1 subject_03 subject_04"; do
  set -- $spec
  out=/work/cams/fold$1
  if [ -f $out/done ]; then continue; fi
  mkdir -p $out
  /usr/bin/time -v nice -n 10 python scripts/compare_cams.py --workdir=/work/campaign/runs/base/fold$1_seed0 \
     --output=$out --scans=$D/$2.npz:5,$D/$3.npz:5 >> $out/run.log 2>&1 && touch $out/done
done
