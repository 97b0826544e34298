#!/usr/bin/env bash
# The CPU demo's references (conf/train_supernet_conformer_demo.yaml, after tools/demo.sh
# has run stages 1-14): each run goes through stages 11-13 with the demo's decoding (CTC
# prefix beam search + character LM), so every comparison uses the same updates and the
# same decoding. Stage 13 publishes each run's record into results/<exp>/ (tools/docs.sh
# renders docs/results.md from them).
#   local/compare_demo.sh [run.sh options]
#   RUNS=alone local/compare_demo.sh        # a subset: alone seeds
#   SEEDS="2 3" RUNS=seeds local/compare_demo.sh
# alone: the full size (24 modules) trained alone: every update is a largest-only update
#        (model_conf.largest_warmup_steps = all updates), decoded at size 24;
# seeds: the demo again with --seed N (default 2), stages 11-13: how much a re-run varies.
set -euo pipefail
cd "$(dirname "$0")/.."

conf=conf/train_supernet_conformer_demo.yaml
tag=train_supernet_conformer_demo
updates=$(python3 -c "import sys, yaml; c = yaml.safe_load(open(sys.argv[1]));
print(c['max_epoch'] * c['num_iters_per_epoch'])" "$conf")

for run in ${RUNS:-alone seeds}; do
  case $run in
    alone)
      ./run.sh --stage 11 --stop_stage 13 --asr_config "$conf" --asr_tag "${tag}_largest_only" --subnets 24 \
        --asr_args "--model_conf largest_warmup_steps=${updates}" "$@" ;;
    seeds)
      for seed in ${SEEDS:-2}; do
        ./run.sh --stage 11 --stop_stage 13 --asr_config "$conf" --asr_tag "${tag}_seed${seed}" \
          --asr_args "--seed ${seed}" "$@"
      done ;;
    *) echo "$0: unknown run '$run' (alone seeds)" >&2; exit 1 ;;
  esac
done
