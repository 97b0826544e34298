#!/usr/bin/env bash
# Usage: tools/test.sh [pytest options]
#
# Sets up .venv (tools/setup.sh; seconds when already done) and runs the test suite:
# unit tests with tiny models and end-to-end recipe runs on a tiny generated corpus.
# With 2 or more cores the suite runs in TEST_WORKERS pytest-xdist workers (default 2,
# each with nproc / workers threads; 0 runs it in this process), a test file per unit of
# work (see tests/conftest.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
cd "$root"
cores=$(nproc)
workers=${TEST_WORKERS:-$([ "$cores" -ge 2 ] && echo 2 || echo 0)}
if [ "$workers" -gt 0 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( cores / workers > 0 ? cores / workers : 1 ))}
  exec .venv/bin/python -m pytest tests -q --durations=15 -n "$workers" \
    --dist loadfile --no-loadscope-reorder "$@"
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest tests -q --durations=15 "$@"
