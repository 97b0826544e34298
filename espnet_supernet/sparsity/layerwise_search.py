"""Per-layer sparsity search under a parameter budget (Omni-sparsity's second step).

After Omni-sparsity training every encoder block can run at any trained level, the
levels being nested masks of the same weights, so a per-layer configuration needs no
retraining. Two searches:

- :func:`evolutionary_layerwise_search`, as Yang et al. (2022) search: a population of
  configurations within the budget, each generation keeping the best (elitism) and
  breeding children by mutation (each block's level redrawn with a probability) and
  crossover (each block's level from one of two parents), children over the budget
  repaired by raising random blocks' levels; the best uniform level within the budget is
  in the first population, so the result is never worse than it on the dev loss.
- :func:`greedy_layerwise_search`: start dense; at each step raise by one level the block
  whose move costs the least dev loss per parameter removed; stop when the budget is met.
  Each move scores at most one candidate per block, so the whole search is at most
  blocks x (blocks x levels) scores.
"""

import logging
import random
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


def _repair(config: Config, blocks: Sequence[int], num_levels: int,
            params_of: Callable[[Config], int], budget: int, rng: random.Random) -> Config:
    """``config`` with random blocks raised one level at a time until within ``budget``."""
    config = dict(config)
    while params_of(config) > budget:
        raisable = [b for b in blocks if config[b] < num_levels - 1]
        if not raisable:
            break
        b = rng.choice(raisable)
        config[b] += 1
    return config


def evolutionary_layerwise_search(
    blocks: Sequence[int], num_levels: int, params_of: Callable[[Config], int],
    score_of: Callable[[Config], float], budget: int, population: int = 16,
    generations: int = 8, parents: int = 4, mutation_prob: float = 0.2,
    seed: int = 0, start: Optional[Sequence[Config]] = None,
) -> SearchResult:
    """Evolutionary search for the lowest-loss config with ``params_of <= budget``.

    Args:
        blocks, num_levels, params_of, score_of, budget: as :func:`greedy_layerwise_search`.
        population: configurations per generation.
        generations: generations after the first population.
        parents: the best configurations kept and bred each generation.
        mutation_prob: probability that a child redraws a block's level.
        seed: random seed (the search is deterministic given it).
        start: configurations put in the first population (default: the densest uniform
            level within the budget); the rest are random, repaired to the budget.

    Returns:
        The best configuration; ``history`` holds the best after each generation
        (``generation``, ``config``, ``params``, ``score``, ``scored``: configurations
        scored so far).

    Raises:
        ValueError: the budget is below the sparsest configuration, or bad sizes.
    """
    if population < 2 or not 1 <= parents <= population or generations < 0:
        raise ValueError(f"need population >= 2, 1 <= parents <= population and "
                         f"generations >= 0; got {population}, {parents}, {generations}")
    sparsest = {b: num_levels - 1 for b in blocks}
    if params_of(sparsest) > budget:
        raise ValueError(f"budget {budget} is below the sparsest configuration "
                         f"({params_of(sparsest)} parameters)")
    rng = random.Random(seed)
    scores: Dict[Tuple[int, ...], float] = {}

    def key(config: Config) -> Tuple[int, ...]:
        return tuple(config[b] for b in blocks)

    def score(config: Config) -> float:
        k = key(config)
        if k not in scores:
            scores[k] = score_of(config)
        return scores[k]

    members = [dict(c) for c in (start if start is not None else
                                 [uniform_within_budget(blocks, num_levels, params_of, budget)])]
    while len(members) < population:
        members.append(_repair({b: rng.randrange(num_levels) for b in blocks}, blocks,
                               num_levels, params_of, budget, rng))
    history: List[dict] = []
    for generation in range(generations + 1):
        unique = list({key(m): m for m in members}.values())
        ranked = sorted(unique, key=lambda m: (score(m), params_of(m), key(m)))
        best = ranked[0]
        history.append(dict(generation=generation, config=dict(best), params=params_of(best),
                            score=score(best), scored=len(scores)))
        logging.info("evolution generation %d: best levels %s, %d params (budget %d), dev "
                     "loss %.4f, %d configurations scored", generation,
                     [best[b] for b in blocks], params_of(best), budget, score(best),
                     len(scores))
        if generation == generations:
            break
        elite = ranked[:parents]
        children = []
        while len(elite) + len(children) < population:
            if len(children) % 2 == 0 or len(elite) < 2:  # mutation
                parent = rng.choice(elite)
                child = {b: rng.randrange(num_levels) if rng.random() < mutation_prob
                         else parent[b] for b in blocks}
            else:  # crossover
                a, b_ = rng.sample(elite, 2)
                child = {b: (a if rng.random() < 0.5 else b_)[b] for b in blocks}
            children.append(_repair(child, blocks, num_levels, params_of, budget, rng))
        members = elite + children
    best = history[-1]
    return SearchResult(best["config"], best["params"], best["score"], history)
