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

# LM text (stages 6-8), as ESPnet's librispeech recipe: LibriSpeech's normalised LM corpus
# (openslr 11: put librispeech-lm-norm.txt.gz into $LIBRISPEECH/LibriSpeech), or the
# embedded corpus's own (fortune sentences minus the dev and test transcripts).
lm_text=$LIBRISPEECH/LibriSpeech/librispeech-lm-norm.txt.gz
if [ -f "$lm_text" ]; then
  mkdir -p data/local/other_text
  gzip -dc "$lm_text" | awk '{ printf("librispeech_lm_norm_%08d %s\n", NR, $0) }' \
    > data/local/other_text/text
  echo "local/data.sh: LM text: $(wc -l < data/local/other_text/text) sentences -> data/local/other_text/text"
else
  echo "local/data.sh: no $lm_text: the LM (stages 6-8) trains on the training transcripts only"
fi
