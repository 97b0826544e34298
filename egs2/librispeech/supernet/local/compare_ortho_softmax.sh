#!/usr/bin/env bash
# OrthoSoftmax on the embedded corpus (issue: learned selection, part 2): layer-wise vs
# component-wise and params- vs FLOPs-aware selection, the same model and number of updates
# (conf/train_supernet_conformer_demo_ortho_softmax.yaml, overridden per run). Each run goes
# through stages 11-13 (training, per-size decoding, scoring); stage 13 rewrites ./RESULTS.md
# with every scored experiment side by side. Needs stages 1-10 done (./run.sh --stop_stage 10).
#   local/compare_ortho_softmax.sh [run.sh options]
#   GRANULARITIES=layer CRITERIA="flops params" local/compare_ortho_softmax.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."

conf=conf/train_supernet_conformer_demo_ortho_softmax.yaml
# Budgets as fractions of the full encoder: about the costs of the static demo sizes
# {8, 16, 24} (2, 4, 6 whole blocks), so that the rows of RESULTS.md line up.
declare -A budgets=([flops]="[0.55,0.78,1.0]" [params]="[0.41,0.7,1.0]")

for granularity in ${GRANULARITIES:-component layer}; do
  for criterion in ${CRITERIA:-flops params}; do
    ./run.sh --stage 11 --asr_config "$conf" \
      --asr_tag "train_supernet_conformer_demo_ortho_${granularity}_${criterion}" \
      --asr_args "--selection_conf granularity=${granularity} --selection_conf criterion=${criterion} --selection_conf budgets=${budgets[$criterion]}" \
      "$@"
  done
done
