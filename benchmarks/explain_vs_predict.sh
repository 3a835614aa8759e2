#!/bin/bash
# The whole-command cost of explain's default against predict on the same 4 Duke B-scans
# (issue 30's budget: at most 3x), timed by farm-bench in turn (A B A B ..., ratio per pair),
# with the load average before and after. Run it on an idle machine.
#
#   benchmarks/explain_vs_predict.sh WORKDIR DUKE_SUBJECT.npz OUT.txt [EXPLAIN_FLAG ...]
#
# EXPLAIN_FLAGs (e.g. --cam_method=hirescam --cam_layers=dec3_conv1) time a candidate default.
set -euo pipefail
workdir=$1; subject=$2; out=$3; shift 3
tmp=$(mktemp -d)
python - "$subject" "$tmp/four.npz" <<'PY'
import sys
import numpy as np
from octseg_jax.outputs.atomic import write_npz
with np.load(sys.argv[1]) as d:
  write_npz(sys.argv[2], images=d["images"][:4])
PY
{
  echo "workdir: $workdir; scans: the first 4 B-scans of $subject; explain flags: ${*:-none}; $(python -c 'import jax; print("jax", jax.__version__)')"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  farm-bench -n "${RUNS:-3}" --warmup 1 --timeout 1800 \
    --vs "python main.py --mode=predict --workdir=$workdir --input=$tmp/four.npz --output=$tmp/predict" \
    -- python main.py --mode=explain --workdir=$workdir --input=$tmp/four.npz --output=$tmp/explain "$@"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  python -c 'import json, sys; s = json.load(open(sys.argv[1]))["settings"]
print("explained: " + s["method"] + " at " + ",".join(s["layers"]))' "$tmp/explain/cam_stats.json"
} > "$out.partial" 2>&1
mv "$out.partial" "$out"
rm -rf "$tmp"
