#!/usr/bin/env python3
"""Find per-layer sparsities of an Omni-sparsity model that meet a parameter budget.

Usage:
    python -m espnet_supernet.bin.sparsity_search \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/dev_clean/wav.scp,speech,sound \\
        --data_path_and_name_and_type dump/raw/dev_clean/text,text,text \\
        --budget 0.5 --output exp/asr/sparsity_search.yaml [--num_utts 100]

``--budget`` counts the encoder's nonzero parameters: a fraction of the dense encoder
(``0.5``) or an absolute number (``1.2M``). Every block can take any trained level (the
masks are nested), so candidates need no retraining: each is scored by its loss on
``--num_utts`` dev utterances (drawn with ``--seed``). The greedy search of
:mod:`espnet_supernet.sparsity.layerwise_search` logs every move. The output YAML holds
the chosen level per block (``block_sparsity``), its parameters and dev loss, the same
for the densest uniform level within the budget, and the search history.
"""

import argparse
import random
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import torch
import yaml

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.selection.ortho_softmax import parse_budget
from espnet_supernet.sparsity.layerwise_search import (
    greedy_layerwise_search,
    uniform_within_budget,
)
from espnet_supernet.tasks.asr import SupernetASRTask


def load_batches(train_args: argparse.Namespace, data: List[str], num_utts: int,
                 batch_size: int, seed: int) -> List[Dict[str, torch.Tensor]]:
    """``num_utts`` utterances (speech + tokenized text) of the data files, batched."""
    triples = [tuple(d.split(",")) for d in data]
    if sorted(t[1] for t in triples) != ["speech", "text"]:
        raise ValueError("give --data_path_and_name_and_type for speech and for text")
    for path, _, _ in triples:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
    speech_path = next(p for p, n, _ in triples if n == "speech")
    keys = [line.split(maxsplit=1)[0] for line in open(speech_path, encoding="utf-8")
            if line.strip()]
    chosen = sorted(random.Random(seed).sample(keys, min(num_utts, len(keys))))
    with tempfile.NamedTemporaryFile("w", suffix=".scp") as key_file:
        key_file.write("".join(f"{k}\n" for k in chosen))
        key_file.flush()
        loader = SupernetASRTask.build_streaming_iterator(
            data_path_and_name_and_type=triples, dtype="float32", batch_size=batch_size,
            key_file=key_file.name, num_workers=0,
            preprocess_fn=SupernetASRTask.build_preprocess_fn(train_args, False),
            collate_fn=SupernetASRTask.build_collate_fn(train_args, False),
            allow_variable_data_keys=False, inference=False)
        return [batch for _, batch in loader]


def search(args: argparse.Namespace) -> dict:
    """Run the search; returns the record written to ``--output``."""
    for path in (args.asr_train_config, args.asr_model_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
    model, train_args = SupernetASRTask.build_model_from_file(
        args.asr_train_config, args.asr_model_file, "cpu")
    sparsity = getattr(model, "sparsity", None)
    if sparsity is None:
        raise ValueError(f"{args.asr_train_config} was not trained with sparsity "
                         "(sparsity: omni): there are no per-layer levels to search")
    model.eval()
    batches = load_batches(train_args, args.data_path_and_name_and_type, args.num_utts,
                           args.batch_size, args.seed)
    dense_encoder = sum(p.numel() for p in model.encoder.parameters())
    fixed = dense_encoder - sparsity.prunable_params

    def params_of(config: Dict[int, int]) -> int:
        return fixed + sparsity.nonzero_params([config[t.block] for t in sparsity.targets])

    def score_of(config: Dict[int, int]) -> float:
        sparsity.set_layerwise(config)
        total = sum(float(model.active_loss(**b)) * b["speech"].size(0) for b in batches)
        return total / sum(b["speech"].size(0) for b in batches)

    blocks, levels = sparsity.blocks, len(sparsity.levels)
    value, absolute = parse_budget(args.budget)
    budget = int(value if absolute else value * dense_encoder)
    low, high = params_of({b: levels - 1 for b in blocks}), dense_encoder
    if not low <= budget <= high:
        raise ValueError(f"budget {args.budget} ({budget} encoder parameters) is outside "
                         f"what the trained levels reach: {low} .. {high} "
                         f"({low / dense_encoder:.3f} .. 1.0 of the dense encoder)")
    result = greedy_layerwise_search(blocks, levels, params_of, score_of, budget)
    uniform = uniform_within_budget(blocks, levels, params_of, budget)
    record = {
        "budget": budget, "dense_encoder_params": dense_encoder,
        "levels": sparsity.levels, "num_utts": sum(b["speech"].size(0) for b in batches),
        "block_sparsity": {b: sparsity.levels[i] for b, i in result.config.items()},
        "encoder_params": result.params, "dev_loss": result.score,
        "uniform": {"sparsity": sparsity.levels[uniform[blocks[0]]],
                    "encoder_params": params_of(uniform), "dev_loss": score_of(uniform)},
        "history": [{"block_sparsity": {b: sparsity.levels[i] for b, i in h["config"].items()},
                     "encoder_params": h["params"], "dev_loss": h["score"]}
                    for h in result.history],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(yaml.safe_dump(record, sort_keys=False))
    print(f"per-layer sparsity {list(record['block_sparsity'].values())}: "
          f"{result.params} encoder params, dev loss {result.score:.4f}; uniform "
          f"{record['uniform']['sparsity']}: {record['uniform']['encoder_params']} params, "
          f"dev loss {record['uniform']['dev_loss']:.4f} -> {args.output}")
    return record


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, required=True)
    parser.add_argument("--data_path_and_name_and_type", action="append", required=True,
                        help="dev speech and text, e.g. dump/raw/dev/wav.scp,speech,sound "
                        "and dump/raw/dev/text,text,text")
    parser.add_argument("--budget", required=True,
                        help="encoder nonzero parameters: a fraction of the dense encoder "
                        "(0.5) or absolute (1.2M)")
    parser.add_argument("--output", type=Path, required=True, help="YAML to write")
    parser.add_argument("--num_utts", type=int, default=100,
                        help="dev utterances scoring each candidate")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Search and write the per-layer sparsities."""
    run_cli("sparsity_search", get_parser(), cmd, search, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
