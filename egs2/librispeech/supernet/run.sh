#!/usr/bin/env bash
# LibriSpeech supernet recipe: one Conformer supernet, every size decoded and scored.
#   ./run.sh                          # stages 1-13 with the CPU demo config
#   ./run.sh --stage 10               # from collect stats on
#   ./run.sh --asr_config conf/train_supernet_conformer_paper.yaml --ngpu 4 \
#       --lm_config conf/train_lm_paper.yaml --inference_config conf/decode_ctc_lm.yaml
#   ./run.sh --use_lm false --inference_config conf/decode_ctc_greedy.yaml  # no LM, fastest
# With LIBRISPEECH empty in db.sh, stage 1 generates the embedded espeak-ng corpus.
set -euo pipefail
cd "$(dirname "$0")"

train_set=train_clean_100
valid_set=dev_clean
test_sets="dev_clean test_clean"
asr_config=conf/train_supernet_conformer_demo.yaml
lm_config=conf/train_lm_char_demo.yaml       # paper configs: conf/train_lm_paper.yaml
inference_config=conf/decode_ctc_lm.yaml      # CPU demo; conf/decode_ctc_att.yaml on GPUs

./supernet.sh \
  --train_set "$train_set" --valid_set "$valid_set" --test_sets "$test_sets" \
  --asr_config "$asr_config" --lm_config "$lm_config" --inference_config "$inference_config" \
  --token_type char --max_duration 20 "$@"  # paper configs: --token_type bpe --nbpe 5000
