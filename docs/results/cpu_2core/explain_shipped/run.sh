#!/bin/bash
# The shipped predictor (pretrained/) explains the first 4 labelled B-scans of Duke subject 1
# with its default method and layer, ROAD and the sanity check, from a worktree pinned at the
# commit that shipped it (argument 1), nice -n 10, on the shared 2-core CPU while the campaign
# trains. Kept here: cam_stats.json/.md, manifest.json, run.log and the first scan's figure.
set -euo pipefail
COMMIT=${1:?usage: run.sh COMMIT}
WT=/work/wt_ship
OUT=/work/shipped_explain/subject01_road_sanity
git -C /work/main worktree remove --force $WT 2>/dev/null || true
git -C /work/main worktree add -f --detach $WT "$COMMIT"
cd $WT
. /work/venv/bin/activate
rm -rf "$OUT"; mkdir -p /work/shipped_explain
/usr/bin/time -v nice -n 10 python main.py --mode=explain --workdir=pretrained \
  --input=../shared/data/duke_dme_chiu2015/subject_01.npz --output="$OUT" \
  --cam_faithfulness=road --cam_sanity > /work/shipped_explain/run.log 2>&1
KEEP=/work/main/docs/results/cpu_2core/explain_shipped
cp "$OUT"/cam_stats.json "$OUT"/cam_stats.md "$OUT"/manifest.json "$OUT"/subject_01_b10_cam.png \
  /work/shipped_explain/run.log "$KEEP"/
touch /work/shipped_explain/done
