#!/usr/bin/env bash
# Omni-sparsity on the embedded corpus (issue: Omni-sparsity): one job trained for the
# levels {0, 0.3, 0.5, 0.7, 0.85} (conf/train_supernet_conformer_demo_omni.yaml) vs each
# level pruned alone (the same config with one level: dense training, gradual magnitude
# pruning with the same cubic warm-up, fine-tuning at the level), every run the same
# number of updates. Stages 11-13 (training, per-level CTC greedy decoding, scoring);
# stage 13 rewrites ./RESULTS.md with every scored experiment side by side. Needs stages
# 1-10 done (character units: run.sh's default --token_type char).
#   local/compare_omni.sh [run.sh options]
#   RUNS=omni local/compare_omni.sh                  # a subset: omni pruned
#   LEVELS="0.5 0.85" RUNS=pruned local/compare_omni.sh
# Several seeds, with the one-job-vs-alone table of RESULTS.md (mean and range per level):
#   local/compare_alone.sh --config conf/train_supernet_conformer_demo_omni.yaml \
#     --seeds "0 1" --sizes sp85 --inference_config conf/decode_ctc_greedy.yaml --use_lm false
# Then per level: ./run.sh --stage 14 --asr_config conf/train_supernet_conformer_demo_omni.yaml
# --inference_config conf/decode_ctc_greedy.yaml --use_lm false (export, file size, latency).
set -euo pipefail
cd "$(dirname "$0")/.."

conf=conf/train_supernet_conformer_demo_omni.yaml
tag=train_supernet_conformer_demo_omni
omni=(--asr_config "$conf" --inference_config conf/decode_ctc_greedy.yaml --use_lm false
      --stop_stage 13)

for run in ${RUNS:-omni pruned}; do
  case $run in
    omni) ./run.sh --stage 11 "${omni[@]}" --asr_tag "$tag" "$@" ;;
    pruned)
      for level in ${LEVELS:-0.3 0.5 0.7 0.85}; do
        ./run.sh --stage 11 "${omni[@]}" --asr_tag "${tag}_pruned_${level}" \
          --asr_args "--sparsity_conf levels=[${level}]" "$@"
      done ;;
    *) echo "$0: unknown run '$run' (omni pruned)" >&2; exit 1 ;;
  esac
done
