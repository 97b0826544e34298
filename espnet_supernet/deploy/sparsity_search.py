"""Per-layer sparsities of an Omni-sparsity model that meet an encoder parameter budget.

Every block can take any trained level (the masks are nested), so candidates need no
retraining: each is scored by its loss on a few dev utterances, and the evolutionary
search (Yang et al. 2022) and / or the greedy search of
:mod:`espnet_supernet.sparsity.layerwise_search` pick the levels. The command line is
``espnet_supernet.bin.sparsity_search``.
"""

import argparse
import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import yaml

from espnet_supernet.checkpoint import load_model
from espnet_supernet.data.utterance_subset import load_utterances, read_keys
from espnet_supernet.selection.ortho_softmax import parse_budget
from espnet_supernet.sparsity.layerwise_search import (
    evolutionary_layerwise_search,
    greedy_layerwise_search,
    uniform_within_budget,
)

SEARCHES = ("evolutionary", "greedy")


def load_batches(train_args: argparse.Namespace, data: List[str], num_utts: int,
                 batch_size: int, seed: int) -> List[Dict[str, torch.Tensor]]:
    """``num_utts`` utterances (speech + tokenized text) of the data files, drawn with
    ``seed``, batched."""
    triples = [tuple(d.split(",")) for d in data]
    if sorted(t[1] for t in triples) != ["speech", "text"]:
        raise ValueError("give --data_path_and_name_and_type for speech and for text")
    for path, _, _ in triples:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
    keys = read_keys(next(p for p, n, _ in triples if n == "speech"))
    chosen = sorted(random.Random(seed).sample(keys, min(num_utts, len(keys))))
    return load_utterances(train_args, triples, chosen, batch_size, inference=False)


def search_block_sparsity(model: torch.nn.Module, batches: List[Dict[str, torch.Tensor]],
                          budget_text: str, searches: Sequence[str] = SEARCHES,
                          evolution: Optional[dict] = None) -> dict:
    """Search the per-block levels of ``model`` (eval mode, ``model.sparsity`` set) within
    ``budget_text`` encoder nonzero parameters (a fraction of the dense encoder or
    absolute, e.g. ``1.2M``), scored by the mean loss over ``batches``.

    Args:
        searches: which searches to run (``evolutionary``, ``greedy``).
        evolution: options of ``evolutionary_layerwise_search`` (population,
            generations, parents, mutation_prob, seed).

    Returns:
        ``budget``, the best search's ``method``, ``block_sparsity``, its
        ``encoder_params`` and ``dev_loss``; per search (``searches``) the same with the
        number of configurations it ``scored``, its ``seconds`` and ``history``; the same
        for the densest ``uniform`` level within the budget.
    """
    unknown = [s for s in searches if s not in SEARCHES]
    if unknown or not searches:
        raise ValueError(f"unknown search {unknown or searches}; choose from {SEARCHES}")
    sparsity = model.sparsity
    dense_encoder = sum(p.numel() for p in model.encoder.parameters())
    fixed = dense_encoder - sparsity.prunable_params
    counted = {"scores": 0}

    def params_of(config: Dict[int, int]) -> int:
        return fixed + sparsity.nonzero_params([config[t.block] for t in sparsity.targets])

    def score_of(config: Dict[int, int]) -> float:
        counted["scores"] += 1
        model.set_block_levels(config)
        total = sum(float(model.active_loss(**b)) * b["speech"].size(0) for b in batches)
        return total / sum(b["speech"].size(0) for b in batches)

    blocks, levels = sparsity.blocks, len(sparsity.levels)
    value, absolute = parse_budget(budget_text)
    budget = int(value if absolute else value * dense_encoder)
    low, high = params_of({b: levels - 1 for b in blocks}), dense_encoder
    if not low <= budget <= high:
        raise ValueError(f"budget {budget_text} ({budget} encoder parameters) is outside "
                         f"what the trained levels reach: {low} .. {high} "
                         f"({low / dense_encoder:.3f} .. 1.0 of the dense encoder)")

    def named(config: Dict[int, int]) -> Dict[int, float]:
        return {b: sparsity.levels[i] for b, i in config.items()}

    uniform = uniform_within_budget(blocks, levels, params_of, budget)
    results = {}
    for method in searches:
        counted["scores"], start = 0, time.perf_counter()
        if method == "greedy":
            result = greedy_layerwise_search(blocks, levels, params_of, score_of, budget)
            history = [{"block_sparsity": named(h["config"]), "encoder_params": h["params"],
                        "dev_loss": h["score"]} for h in result.history]
        else:
            result = evolutionary_layerwise_search(blocks, levels, params_of, score_of,
                                                   budget, **(evolution or {}))
            history = [{"generation": h["generation"], "block_sparsity": named(h["config"]),
                        "encoder_params": h["params"], "dev_loss": h["score"],
                        "scored": h["scored"]} for h in result.history]
        results[method] = {"block_sparsity": named(result.config),
                           "encoder_params": result.params, "dev_loss": result.score,
                           "scored": counted["scores"],
                           "seconds": round(time.perf_counter() - start, 1),
                           "history": history}
    method = min(results, key=lambda m: (results[m]["dev_loss"], m))
    return {
        "budget": budget, "dense_encoder_params": dense_encoder,
        "levels": sparsity.levels, "num_utts": sum(b["speech"].size(0) for b in batches),
        "method": method,
        **{k: results[method][k] for k in ("block_sparsity", "encoder_params", "dev_loss")},
        "uniform": {"sparsity": sparsity.levels[uniform[blocks[0]]],
                    "encoder_params": params_of(uniform), "dev_loss": score_of(uniform)},
        "searches": results,
        "evolution": dict(evolution or {}),
    }


def sparsity_search(config: Path, model_file: Path, data: List[str], budget: str,
                    output: Path, num_utts: int = 100, batch_size: int = 8,
                    seed: int = 0, searches: Sequence[str] = SEARCHES,
                    evolution: Optional[dict] = None) -> dict:
    """Load the model, search (``search_block_sparsity``) on ``num_utts`` utterances of
    ``data`` (``path,name,type`` strings for speech and text), write the record to
    ``output`` (YAML), print a summary line and return the record."""
    model, train_args = load_model(config, model_file, "cpu")
    if getattr(model, "sparsity", None) is None:
        raise ValueError(f"{config} was not trained with sparsity "
                         "(sparsity: omni): there are no per-layer levels to search")
    model.eval()
    batches = load_batches(train_args, data, num_utts, batch_size, seed)
    record = search_block_sparsity(model, batches, budget, searches, evolution)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(yaml.safe_dump(record, sort_keys=False))
    for method, r in record["searches"].items():
        print(f"{method}: per-layer sparsity {list(r['block_sparsity'].values())}: "
              f"{r['encoder_params']} encoder params, dev loss {r['dev_loss']:.4f} "
              f"({r['scored']} configurations scored, {r['seconds']} s)")
    print(f"best: {record['method']}; "
          f"uniform {record['uniform']['sparsity']}: {record['uniform']['encoder_params']} "
          f"params, dev loss {record['uniform']['dev_loss']:.4f} -> {output}")
    return record
