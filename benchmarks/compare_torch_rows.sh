#!/usr/bin/env bash
# The five rows of the PyTorch comparison (issue 17), one after the other on a quiet machine:
#   benchmarks/compare_torch_rows.sh [OUT_DIR] [STEPS] [ROUNDS]
# writes OUT_DIR/compare_<row>.json (default docs/results/cpu_2core) with benchmarks/compare_torch.py,
# each row timed ROUNDS times (default 3; octseg_jax then PyTorch per round), median ratio kept.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/results/cpu_2core}
steps=${2:-5}
rounds=${3:-3}
w16='model.widths=(16,32,64,128,128)'
run() { name=$1; shift; python benchmarks/compare_torch.py --steps="$steps" --rounds="$rounds" --out="$out/compare_$name.json" "$@"; }
run paper_unpool_b4 --config=configs/segnet.py --batch=4
run w16_unpool_b8 --config=configs/segnet.py --batch=8 --set "$w16"
run duke_cpu_b8 --config=configs/duke_cpu.py --batch=8
run paper_skip_transpose_b4 --config=configs/segnet.py --batch=4 \
    --set model.skip=True --set model.upsample=transpose
run w16_skip_transpose_b8 --config=configs/segnet.py --batch=8 --set "$w16" \
    --set model.skip=True --set model.upsample=transpose
