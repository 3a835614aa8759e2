#!/bin/bash
# Folds 2 and 3 of the held-out CAM comparison (issue 30): waits until the campaign has
# committed the base fold model, then explains 2 scans of its validation subjects.
cd /work/wt_cams
. /work/venv/bin/activate
D=../shared/data/duke_dme_chiu2015
for spec in "2 subject_05 subject_06" "3 subject_07 subject_08"; do
  set -- $spec
  out=/work/cams/fold$1
  if [ -f $out/done ]; then continue; fi
  until [ -f /work/main/docs/results/campaign/base/fold$1_seed0/run.json ]; do sleep 300; done
  mkdir -p $out
  /usr/bin/time -v nice -n 10 python scripts/compare_cams.py --workdir=/work/campaign/runs/base/fold$1_seed0 \
     --output=$out --scans=$D/$2.npz:5,$D/$3.npz:5 >> $out/run.log 2>&1 && touch $out/done
done
