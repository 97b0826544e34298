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
parts=${parts//,/ }  # also comma-separated (run.sh --local_data_opts "--parts a,b,c")

if [ -z "$LIBRISPEECH" ]; then
  LIBRISPEECH=downloads/embedded
  echo "local/data.sh: LIBRISPEECH is empty in db.sh: generating the embedded corpus in $LIBRISPEECH"
  python -m espnet_supernet.bin.make_embedded_corpus --outdir "$LIBRISPEECH" $corpus_opts
fi
python -m espnet_supernet.bin.prepare_librispeech --librispeech "$LIBRISPEECH" \
  --parts $parts --outdir data

# LibriSpeech-960: the three training parts in one directory (C-locale sorted, as every
# data dir), e.g. run.sh --local_data_opts "--parts train-clean-100,train-clean-360,
# train-other-500,dev-clean,dev-other,test-clean,test-other" --train_set train_960
if [ -d data/train_clean_100 ] && [ -d data/train_clean_360 ] && [ -d data/train_other_500 ]; then
  mkdir -p data/train_960
  for f in wav.scp text utt2spk; do
    cat data/train_{clean_100,clean_360,other_500}/$f | LC_ALL=C sort > data/train_960/$f
  done
  awk '{ u[$2] = u[$2] " " $1 } END { for (s in u) print s u[s] }' data/train_960/utt2spk \
    | LC_ALL=C sort > data/train_960/spk2utt
  echo "local/data.sh: data/train_960: $(wc -l < data/train_960/wav.scp) utterances"
fi

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
