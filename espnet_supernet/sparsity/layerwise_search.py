"""Per-layer sparsity search under a parameter budget (Omni-sparsity's second step).

After Omni-sparsity training every encoder block can run at any trained level, the
levels being nested masks of the same weights, so a per-layer configuration needs no
retraining (Yang et al. 2022 search it with an evolutionary algorithm). Here a greedy
search: start dense; at each step raise by one level the block whose move costs the least
dev loss per parameter removed; stop when the budget is met. Each move scores at most one
candidate per block, so the whole search is at most blocks x (blocks x levels) scores.
"""

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Sequence

Config = Dict[int, int]  # encoder block -> level index


@dataclass
class SearchResult:
    """Outcome of ``greedy_layerwise_search``.

    Attributes:
        config: level index per block.
        params: parameters kept by ``config``.
        score: its dev loss.
        history: (config, params, score) after each move, dense first.
    """

    config: Config
    params: int
    score: float
    history: List[dict] = field(default_factory=list)


def greedy_layerwise_search(blocks: Sequence[int], num_levels: int,
                            params_of: Callable[[Config], int],
                            score_of: Callable[[Config], float],
                            budget: int) -> SearchResult:
    """Lowest-loss-per-parameter greedy search for a config with ``params_of <= budget``.

    Args:
        blocks: the encoder blocks that have sparse weights.
        num_levels: trained levels (index 0 the densest).
        params_of: kept parameters of a config.
        score_of: dev loss of a config (lower is better).
        budget: the parameter budget.

    Raises:
        ValueError: the budget is below what the sparsest level reaches everywhere.
    """
    sparsest = {b: num_levels - 1 for b in blocks}
    if params_of(sparsest) > budget:
        raise ValueError(f"budget {budget} is below the sparsest configuration "
                         f"({params_of(sparsest)} parameters)")
    config = {b: 0 for b in blocks}
    params, score = params_of(config), score_of(config)
    history = [dict(config=dict(config), params=params, score=score)]
    while params > budget:
        best = None
        for b in blocks:
            if config[b] == num_levels - 1:
                continue
            candidate = {**config, b: config[b] + 1}
            c_params = params_of(candidate)
            if c_params >= params:
                continue
            c_score = score_of(candidate)
            cost = (c_score - score) / (params - c_params)
            if best is None or cost < best[0]:
                best = (cost, candidate, c_params, c_score)
        if best is None:  # every block at the sparsest level
            break
        _, config, params, score = best
        history.append(dict(config=dict(config), params=params, score=score))
        logging.info("search step %d: levels %s, %d params (budget %d), dev loss %.4f",
                     len(history) - 1, [config[b] for b in blocks], params, budget, score)
    return SearchResult(config, params, score, history)


def uniform_within_budget(blocks: Sequence[int], num_levels: int,
                          params_of: Callable[[Config], int], budget: int) -> Config:
    """The densest single level for every block that meets the budget."""
    for index in range(num_levels):
        config = {b: index for b in blocks}
        if params_of(config) <= budget:
            return config
    raise ValueError(f"budget {budget} is below the sparsest configuration")
