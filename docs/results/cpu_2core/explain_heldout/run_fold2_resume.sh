#!/bin/bash
# Fold 2 of the held-out CAM comparison lost its Ablation-CAM part to a session end: after fold 3
# finishes, the same run resumes with --resume (pinned worktree /work/wt_cams2) and adds it.
cd /work/wt_cams2
. /work/venv/bin/activate
D=../shared/data/duke_dme_chiu2015
until [ -f /work/cams/fold3/done ]; do sleep 120; done
out=/work/cams/fold2
/usr/bin/time -v nice -n 10 python scripts/compare_cams.py --workdir=/work/campaign/runs/base/fold2_seed0 \
   --output=$out --scans=$D/subject_05.npz:5,$D/subject_06.npz:5 --resume >> $out/run.log 2>&1 && touch $out/done
