#!/usr/bin/env bash
# Usage: tools/test.sh [pytest options]
#
# Sets up .venv (tools/setup.sh; seconds when already done) and runs the test suite:
# unit tests with tiny models and an end-to-end recipe run on a tiny generated corpus.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
cd "$root"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest tests -q --durations=15 "$@"
