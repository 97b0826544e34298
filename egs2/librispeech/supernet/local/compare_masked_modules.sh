#!/usr/bin/env bash
# Simple-Top-k step 1 with the masked modules skipped (this project's default) vs computed
# and multiplied by their 0 / 1 gate (the authors'; Xu et al. 2024), on the embedded corpus:
# conf/train_supernet_conformer_demo_simple_topk.yaml, the same model, data, seed and number
# of updates, only selection_conf.masked_modules differs. Each run goes through stages 11-13
# (training with the selection, per-size decoding, scoring). Then the comparison of the
# selected masks, the WER per size and the step-1 time per update is written to
# results/masked_modules_<tag>.{json,md} (python -m espnet_supernet.bin.compare_runs).
# Needs stages 1-10 done (./run.sh --stop_stage 10).
#   local/compare_masked_modules.sh [--seeds "0 1"] [--modes "skip compute"]
#       [--train_args "--max_epoch 3"] [run.sh options]
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh

config=conf/train_supernet_conformer_demo_simple_topk.yaml
seeds=0
modes="skip compute"
train_args=""
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --train_args) train_args=$2; shift 2 ;;
    *) break ;;
  esac
done
tag=$(basename "$config" .yaml)

runs=()
for seed in $seeds; do
  for mode in $modes; do
    case $mode in skip|compute) ;; *)
      echo "$0: unknown --modes entry '$mode' (skip compute)" >&2; exit 1 ;; esac
    name=${tag}_masked_${mode}_seed${seed}
    ./run.sh --stage 11 --stop_stage 13 --asr_config "$config" --asr_tag "$name" \
      --asr_args "--seed $seed --selection_conf masked_modules=$mode $train_args" "$@"
    runs+=("asr_$name")
  done
done
python -m espnet_supernet.bin.compare_runs --results_dir results --runs "${runs[@]}" \
  --output "results/masked_modules_${tag}"
