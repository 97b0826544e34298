#!/usr/bin/env bash
# TODM on the embedded corpus (issue: TODM): the one-job supernet
# (conf/train_todm_mhssm_demo.yaml) vs each size trained alone, and the paper's ablations
# (without adaptive dropout, without KD, Adam instead of ScaledAdam), every run the same
# number of updates (the config's max_epoch x num_iters_per_epoch). Each run goes through
# stages 11-13 (training, per-size transducer decoding, scoring); stage 13 rewrites
# ./RESULTS.md with every scored experiment side by side. Needs stages 1-10 done.
#   local/compare_todm.sh [run.sh options]
#   RUNS="todm alone" local/compare_todm.sh          # a subset: todm alone no_adaptive_dropout no_kd adam
#   SIZES="d2w0.5 full" RUNS=alone local/compare_todm.sh
set -euo pipefail
cd "$(dirname "$0")/.."

conf=conf/train_todm_mhssm_demo.yaml
tag=train_todm_mhssm_demo
todm=(--asr_config "$conf" --inference_config conf/decode_transducer.yaml --use_lm false
      --stop_stage 13)  # export sizes afterwards with --stage 14 (and the same --asr_tag)

for run in ${RUNS:-todm alone no_adaptive_dropout no_kd adam}; do
  case $run in
    todm) ./run.sh --stage 11 "${todm[@]}" --asr_tag "$tag" "$@" ;;
    alone)
      for size in ${SIZES:-d2w0.5 d4w0.75 d6w0.5 full}; do
        ./run.sh --stage 11 "${todm[@]}" --asr_tag "${tag}_alone_${size}" \
          --asr_args "--model_conf train_only=${size}" "$@"
      done ;;
    no_adaptive_dropout)
      ./run.sh --stage 11 "${todm[@]}" --asr_tag "${tag}_no_adaptive_dropout" \
        --asr_args "--model_conf adaptive_dropout=false" "$@" ;;
    no_kd)
      ./run.sh --stage 11 "${todm[@]}" --asr_tag "${tag}_no_kd" \
        --asr_args "--model_conf kd_weight=0.0" "$@" ;;
    adam)  # the same Eden schedule around Adam's usual Conformer learning rate
      ./run.sh --stage 11 "${todm[@]}" --asr_tag "${tag}_adam" \
        --asr_args "--optim adam --optim_conf lr=0.002" "$@" ;;
    *) echo "$0: unknown run '$run' (todm alone no_adaptive_dropout no_kd adam)" >&2; exit 1 ;;
  esac
done
