#!/bin/bash
# issue 30: the shipped predictor (an ensemble) explains a Duke file with the new default and
# ROAD + the sanity check; waits for the held-out CAM jobs to finish first. Pinned worktree.
cd /work/wt_ship
. /work/venv/bin/activate
until [ -f /work/cams/fold2/done ]; do sleep 60; done
/usr/bin/time -v nice -n 10 python main.py --mode=explain --workdir=pretrained \
  --input=../shared/data/duke_dme_chiu2015/subject_01.npz --output=/work/shipped_explain/subject01_road_sanity \
  --cam_faithfulness=road --cam_sanity > /work/shipped_explain/run.log 2>&1 && touch /work/shipped_explain/done
