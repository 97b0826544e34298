#!/usr/bin/env bash
# Stage 1 for LibriSpeech: writes data/{train_clean_100,dev_clean,test_clean}.
# Reads LIBRISPEECH from db.sh; when it is empty, generates the embedded corpus first.
#   local/data.sh [--corpus_opts "<make_embedded_corpus options>"]
set -euo pipefail
corpus_opts=""
parts="train-clean-100 dev-clean test-clean"
help_message="Usage: $0 [--corpus_opts '...'] [--parts '$parts']"
. utils/parse_options.sh
. ./db.sh

if [ -z "$LIBRISPEECH" ]; then
  LIBRISPEECH=downloads/embedded
  echo "local/data.sh: LIBRISPEECH is empty in db.sh: generating the embedded corpus in $LIBRISPEECH"
  python -m espnet_supernet.bin.make_embedded_corpus --outdir "$LIBRISPEECH" $corpus_opts
fi
python -m espnet_supernet.bin.prepare_librispeech --librispeech "$LIBRISPEECH" \
  --parts $parts --outdir data
