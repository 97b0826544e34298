#!/usr/bin/env bash
# Usage: tools/demo.sh [run.sh options]
#
# The CPU demo: sets up .venv, generates the embedded espeak-ng corpus (LibriSpeech layout),
# runs stages 1-14 of egs2/librispeech/supernet with the demo config (about 20 minutes of
# training on 2 cores: a character LM and the supernet; then decoding of every size with
# the LM, and the export of every size) and prints the per-size WER table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/setup.sh"
cd "$root/egs2/librispeech/supernet"
./run.sh "$@"
echo; cat RESULTS.md
