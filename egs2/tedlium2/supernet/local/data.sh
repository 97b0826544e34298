#!/usr/bin/env bash
# Stage 1 for TED-LIUM release 2: writes data/{train,dev,test}/{wav.scp,segments,text,
# utt2spk,spk2utt} (wav.scp keyed by talk; stage 3 cuts the segments). Reads TEDLIUM2 from
# db.sh. Conventions (utterance ids, <unk>, joined ' suffixes): espnet_supernet.data.tedlium_prep.
#   local/data.sh [--sets train,dev,test] [--keep_unk false] [--join_suffix true]
# e.g. run.sh --local_data_opts "--keep_unk true" (keeps <unk> in the text)
set -euo pipefail
sets="train dev test"
keep_unk=false     # true: keep <unk> words in the text
join_suffix=true   # false: keep ' suffixes as words of their own (it 's)
help_message="Usage: $0 [--sets '$sets'] [--keep_unk $keep_unk] [--join_suffix $join_suffix]"
. utils/parse_options.sh
. ./db.sh
sets=${sets//,/ }  # also comma-separated (run.sh --local_data_opts "--sets train,dev")

if [ -z "$TEDLIUM2" ]; then
  echo "local/data.sh: TEDLIUM2 is empty: set TEDLIUM2 in db.sh (or the environment) to the" \
    "directory that contains TEDLIUM_release2/ (openslr.org/19); there is no embedded" \
    "TED-LIUM corpus." >&2
  exit 1
fi
# a wrong path stops prepare_tedlium with a message naming the missing directory
python -m espnet_supernet.bin.prepare_tedlium --tedlium2 "$TEDLIUM2" --sets $sets \
  --outdir data --keep_unk "$keep_unk" --join_suffix "$join_suffix"

# LM text (stages 6-8): the training transcripts (supernet.sh's default); no
# data/local/other_text is written.
echo "local/data.sh: the LM (stages 6-8) trains on the training transcripts (data/train/text)"
