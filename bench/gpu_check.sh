#!/usr/bin/env bash
# The CUDA checks, on a machine with a GPU (bench/bench_gpu.py: the front end off the CPU,
# equality with stock ESPnet on CUDA, a paper-config sandwich update under AMP, a TODM
# paper-config update with the pruned RNN-T loss; times and peak memory). Under 8 minutes
# on one GPU; writes bench/results/gpu_check_cuda.json (commit it).
#   bench/gpu_check.sh [bench_gpu.py options]      e.g. --batch 4 --seconds 10
# Without a GPU: .venv/bin/python bench/bench_gpu.py --device cpu --quick (a dry run).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || tools/setup.sh
if ! .venv/bin/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "$0: torch sees no CUDA device here (nvidia-smi, CUDA_VISIBLE_DEVICES?); for a dry" \
    "run on CPU: .venv/bin/python bench/bench_gpu.py --device cpu --quick" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 480 .venv/bin/python bench/bench_gpu.py --device cuda "$@"
