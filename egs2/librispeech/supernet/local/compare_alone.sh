#!/usr/bin/env bash
# The central claim, measured: one supernet job vs every size trained alone, with the same
# number of updates, the same data and the same decoding, for several seeds.
#
#   local/compare_alone.sh [options] [run.sh options]
#     --config conf/X.yaml   supernet config (default: conf/train_supernet_conformer_demo.yaml)
#     --seeds "1 2"          training seeds (--seed of espnet2; at least 2 to claim a difference)
#     --sizes "8 16"         sizes trained alone (default: every named size of the config)
#     --runs "onejob alone"  which half to run (default: both)
#     --train_args "..."     more training arguments for every run (e.g. "--max_epoch 2")
#     --force true           retrain runs that are already scored (default: skip them)
#
# Experiments (stages 11-13 each: training, per-size decoding, scoring):
#   exp/asr_<tag>_seed<N>              the one job (the config as it is)
#   exp/asr_<tag>_alone<size>_seed<N>  model_conf.train_only=<size>: only that size trained
#                                      and validated, on the same encoder, same updates
# A learned selection config (Simple-Top-k, Iterative-Zero-Out, OrthoSoftmax) has no named
# sizes before training: run its one job only (--runs onejob); the comparison pairs each
# learned size with the alone run of the static config (same encoder and updates) whose
# encoder cost is nearest (FLOPs, or parameters for a params-aware selection).
# where <tag> is the config's name. The recipe's main run exp/asr_<tag> counts as the one
# job of the seed its config.yaml holds (tools/demo.sh trains it with espnet2's default
# seed 0), so `--seeds "0 1"` after the demo does not retrain it.
#
# Stage 13 of every run publishes its record into results/<exp>/ and rewrites the
# comparison section of ./RESULTS.md ("One job vs each size alone", per size: mean and
# range over seeds of dev / test WER, the difference, training time of the one job vs
# the sum of the alone jobs); tools/docs.sh renders the same table into docs/results.md.
set -euo pipefail
me=$(realpath "$0")
cd "$(dirname "$me")/.."

config=conf/train_supernet_conformer_demo.yaml
seeds="1 2"
sizes=""
runs="onejob alone"
force=false
train_args=""
while [ $# -gt 0 ]; do
  case $1 in
    --config) config=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --sizes) sizes=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --train_args) train_args=$2; shift 2 ;;
    --force) force=$2; shift 2 ;;
    --help|-h) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$me"; exit 0 ;;
    *) break ;;
  esac
done
[ -f "$config" ] || { echo "$0: no config $config (give --config conf/<name>.yaml)" >&2; exit 1; }
[ -n "$seeds" ] || { echo "$0: --seeds is empty" >&2; exit 1; }
tag=$(basename "$config" .yaml)
python=${PYTHON:-python3}
# the named sizes of the config, in order (sizes are encoder_conf.subnet_sizes)
all_sizes=$($python - "$config" <<'PY'
import sys, yaml
conf = yaml.safe_load(open(sys.argv[1]))
print(" ".join(str(s) for s in conf.get("encoder_conf", {}).get("subnet_sizes") or []))
PY
)
if [ -z "$all_sizes" ]; then
  case " $runs " in *" alone "*)
    echo "$0: $config names no encoder_conf.subnet_sizes, so it has no size to train alone" \
      "(a learned selection finds its sizes in training). Run its one job with --runs onejob:" \
      "stage 13 pairs each learned size with the static config's alone run of the nearest" \
      "encoder cost, when both have the same updates (e.g. --train_args" \
      "\"--max_epoch 6 --num_iters_per_epoch 282\" for the demo's)." >&2
    exit 1 ;;
  esac
fi
for size in ${sizes:=$all_sizes}; do
  case " $all_sizes " in *" $size "*) ;; *)
    echo "$0: size $size is not one of $config's sizes ($all_sizes)" >&2; exit 1 ;; esac
done

scored() {  # exp name -> true if the run is scored (stage 13 done)
  [ "$force" != true ] && [ -f "exp/$1/score_summary.jsonl" ] && [ -f "exp/$1/checkpoint.pth" ]
}
config_seed() {  # exp name -> the seed its config.yaml holds
  $python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get('seed', 0))" \
    "exp/$1/config.yaml"
}
run() {  # exp name (after asr_), training arguments...
  local name=$1; shift
  if scored "asr_$name"; then
    echo "$0: exp/asr_$name is already scored; skipped (--force true retrains it)"
    return
  fi
  ./run.sh --stage 11 --stop_stage 13 --asr_config "$config" --asr_tag "$name" \
    --asr_args "$* $train_args" "${extra[@]}"
}
extra=("$@")

for seed in $seeds; do
  for part in $runs; do
    case $part in
      onejob)
        if scored "asr_$tag" && [ "$(config_seed "asr_$tag")" = "$seed" ]; then
          echo "$0: seed $seed: the one job is the main run exp/asr_$tag"
        else
          run "${tag}_seed${seed}" --seed "$seed"
        fi ;;
      alone)
        for size in $sizes; do
          run "${tag}_alone${size}_seed${seed}" --seed "$seed" --model_conf "train_only=$size"
        done ;;
      *) echo "$0: unknown run '$part' (onejob alone)" >&2; exit 1 ;;
    esac
  done
done
