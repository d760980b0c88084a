#!/usr/bin/env bash
# The GPU checks in one go, on a machine with a CUDA device and the data installed:
# the side-by-side benchmark, then the six-model study with its training time.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
mkdir -p "$out"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
.venv/bin/python scripts/bench.py --device cuda --json "$out/bench.json" | tee "$out/bench.txt"
MLFLOW_TRACKING_URI="sqlite:///$PWD/$out/mlflow.db" make reproduce RESUME=null \
    | tee "$out/study.txt"
grep -E "test/acc|wall time|s / epoch|^\| model" "$out/study.txt"
