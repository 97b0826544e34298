#!/usr/bin/env bash
# Usage: tools/docs.sh [--check] [doc.md ...]
#
# Renders the figures of README.md, docs/*.md and bench/README.md from the committed result
# files (bench/results/*.json, egs2/librispeech/supernet/results/*/ and RESULTS.md): every
# <!-- table:NAME --> block and <!-- value:FILE KEY FORMAT --> number (see tools/docs.py).
# --check changes nothing: it prints a diff and exits 1 when a doc differs from its render
# (a test and CI run it). Needs .venv (tools/setup.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=$root/.venv/bin/python
[ -x "$python" ] || python=python3
exec "$python" "$root/tools/docs.py" "$@"
