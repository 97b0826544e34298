#!/usr/bin/env bash
# TED-LIUM release 2 supernet recipe: one Conformer supernet, every size decoded and scored.
# Set TEDLIUM2 in db.sh (or the environment) to the directory that contains TEDLIUM_release2/.
#   ./run.sh --ngpu 4                 # stages 1-14, the authors' recipe (sizes 12/24/36/48), BPE 500
#   ./run.sh --stage 10 --ngpu 4      # from collect stats on
#   ./run.sh --use_lm false --inference_config conf/decode_ctc_greedy.yaml  # no LM, fastest
#   TEDLIUM2=/corpora ./run.sh --stop_stage 4   # data preparation and audio cutting only
# The LM (stages 6-8) trains on the training transcripts.
set -euo pipefail
cd "$(dirname "$0")"

train_set=train
valid_set=dev
test_sets="dev test"
asr_config=conf/train_supernet_conformer_paper.yaml
lm_config=conf/train_lm_paper.yaml
inference_config=conf/decode_ctc_lm.yaml   # CTC only; conf/decode_ctc_att.yaml for the _espnet config

./supernet.sh \
  --train_set "$train_set" --valid_set "$valid_set" --test_sets "$test_sets" \
  --asr_config "$asr_config" --lm_config "$lm_config" --inference_config "$inference_config" \
  --token_type bpe --nbpe 500 --max_duration 20 "$@"
