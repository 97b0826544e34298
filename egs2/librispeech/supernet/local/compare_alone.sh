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
# sizes before training: its alone runs train each learned subnet of the one job of the
# same seed from scratch, with the one job's mask fixed (espnet_supernet.bin.alone_config
# writes exp/alone_conf/<tag>_seed<N>.yaml from its subnets.json: selection static,
# encoder_conf.subnet_masks), so the one job of a seed must be trained first (the default
# --runs "onejob alone" does; --sizes picks learned size names). Stage 13 compares each
# learned size with its own subnet alone, and also, when the static config's alone runs
# exist with the same encoder and updates, with the static size of nearest encoder cost.
# An Omni-sparsity config (sparsity: omni) names its sizes by level (sp30 ... sp85): a
# level's alone run is the same config with that one level (--sparsity_conf levels=[0.3]:
# dense training, gradual pruning to the level, fine-tuning at it), same updates.
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
. ./path.sh  # the project's Python (espnet_supernet.bin.alone_config)

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
# whether the config learns its sizes (a selection other than static), whether its sizes
# are sparsity levels, and its named sizes in order (encoder_conf.subnet_sizes, an Omni-
# sparsity config's pruned levels; a learned selection's are checked per seed)
read -r learned omni all_sizes < <($python - "$config" <<'PY'
import sys, yaml
from espnet_supernet.sparsity.omni_sparsity import level_name
conf = yaml.safe_load(open(sys.argv[1]))
omni = conf.get("sparsity") == "omni"
if omni:
    sizes = [level_name(float(s)) for s in conf.get("sparsity_conf", {}).get("levels") or []
             if float(s) > 0]
else:
    sizes = [str(s) for s in conf.get("encoder_conf", {}).get("subnet_sizes") or []]
print("true" if conf.get("selection") not in (None, "none", "static") else "false",
      "true" if omni else "false", *sizes)
PY
)
sizes_given=$sizes
sizes=${sizes:-$all_sizes}
if [ "$learned" = false ]; then
  for size in $sizes; do
    case " $all_sizes " in *" $size "*) ;; *)
      echo "$0: size $size is not one of $config's sizes ($all_sizes)" >&2; exit 1 ;; esac
  done
fi

scored() {  # exp name -> true if the run is scored (stage 13 done)
  [ "$force" != true ] && [ -f "exp/$1/score_summary.jsonl" ] && [ -f "exp/$1/checkpoint.pth" ]
}
config_seed() {  # exp name -> the seed its config.yaml holds
  $python -c "import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get('seed', 0))" \
    "exp/$1/config.yaml"
}
onejob_exp() {  # seed -> the one job's exp name of that seed
  if [ -f "exp/asr_$tag/subnets.json" ] && [ "$(config_seed "asr_$tag")" = "$1" ]; then
    echo "asr_$tag"
  else
    echo "asr_${tag}_seed$1"
  fi
}
run() {  # config, exp name (after asr_), training arguments...
  local conf=$1 name=$2; shift 2
  if scored "asr_$name"; then
    echo "$0: exp/asr_$name is already scored; skipped (--force true retrains it)"
    return
  fi
  ./run.sh --stage 11 --stop_stage 13 --asr_config "$conf" --asr_tag "$name" \
    --asr_args "$* $train_args" "${extra[@]}"
}
learned_alone() {  # seed: every (or each --sizes) learned subnet of its one job, alone
  local seed=$1 one alone_conf names size
  one=$(onejob_exp "$seed")
  if [ ! -f "exp/$one/subnets.json" ]; then
    echo "$0: seed $seed: exp/$one/subnets.json is missing: the learned subnets come from" \
      "the one job of the same seed; train it first (--runs \"onejob alone\" does)" >&2
    exit 1
  fi
  alone_conf=exp/alone_conf/${tag}_seed${seed}.yaml
  $python -m espnet_supernet.bin.alone_config --config "$config" \
    --subnets "exp/$one/subnets.json" --output "$alone_conf" > /dev/null
  names=$($python -c "import json, sys; print(' '.join(json.load(open(sys.argv[1]))))" \
    "exp/$one/subnets.json")
  for size in ${sizes_given:-$names}; do
    case " $names " in *" $size "*) ;; *)
      echo "$0: size $size is not a learned size of exp/$one ($names)" >&2; exit 1 ;; esac
    run "$alone_conf" "${tag}_alone${size}_seed${seed}" --seed "$seed" \
      --model_conf "train_only=$size"
  done
}
extra=("$@")

for seed in $seeds; do
  for part in $runs; do
    case $part in
      onejob)
        if scored "asr_$tag" && [ "$(config_seed "asr_$tag")" = "$seed" ]; then
          echo "$0: seed $seed: the one job is the main run exp/asr_$tag"
        else
          run "$config" "${tag}_seed${seed}" --seed "$seed"
        fi ;;
      alone)
        if [ "$learned" = true ]; then
          learned_alone "$seed"
          continue
        fi
        for size in $sizes; do
          if [ "$omni" = true ]; then  # sp85 -> levels=[0.85]
            run "$config" "${tag}_alone${size}_seed${seed}" --seed "$seed" \
              --sparsity_conf "levels=[$(awk -v p="${size#sp}" 'BEGIN {print p / 100}')]"
          else
            run "$config" "${tag}_alone${size}_seed${seed}" --seed "$seed" \
              --model_conf "train_only=$size"
          fi
        done ;;
      *) echo "$0: unknown run '$part' (onejob alone)" >&2; exit 1 ;;
    esac
  done
done
