"""Simple-Top-k selection (Dynamic Encoder Size, Xu et al., Interspeech 2024).

One learnable score per prunable module. In step 1 every training step also runs a subnet
gated by a hard top-k mask of the scores; the gradient reaches the scores through a relaxed
k-hot vector (straight-through estimator), and k is annealed from M down to the smallest
size. ``masked_modules`` says what the subnet pass does with a hard-masked module:
``compute`` (the authors' way, RWTH's code) runs it and multiplies its output by its gate,
0 in the forward pass, so the straight-through gradient reaches its score directly;
``skip`` does not run it (no compute, a faster step 1): its score then learns only through
the k-hot's coupling of all scores.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_supernet.nets.unit_gates import Gate
from espnet_supernet.selection.abs_selection import AbsSelection, stable_ranking

MASKED_MODULES = ("compute", "skip")


def relaxed_khot(
    scores: torch.Tensor, k: int, temperature: float = 1.0, eps: float = 1e-20
) -> torch.Tensor:
    """Relaxed k-hot vector of ``scores`` (M,): k iterated softmaxes, sums to k.

    a_0 = 0; for j = 1..k: s <- s + log(max(1 - a_{j-1}, eps)), a_j = softmax(s / tau);
    k-hot = sum_j a_j (the continuous top-k of Xie & Ermon 2019 used by Simple-Top-k).
    With tau = 1, the paper's formula, the correction leaves the top element tied with the
    next one, so the k-hot never becomes hard; with tau < 1 it approaches the hard top-k
    indicator as the scores separate. log(1 - a) is computed as
    log(-expm1(log_softmax(s / tau))), exact even for a close to 1.
    """
    s = scores
    khot = torch.zeros_like(scores)
    log_eps = math.log(eps)
    for j in range(k):
        log_a = torch.log_softmax(s / temperature, dim=-1)
        khot = khot + log_a.exp()
        if j + 1 < k:
            s = s + torch.clamp(torch.log(-torch.expm1(log_a)), min=log_eps)
    return khot


def straight_through_topk(khot: torch.Tensor, k: int) -> torch.Tensor:
    """Hard top-k indicator in the forward pass, the k-hot's gradient in the backward."""
    hard = torch.zeros_like(khot)
    hard[stable_ranking(khot.detach().tolist())[:k]] = 1.0
    return hard - khot.detach() + khot


def annealed_k(
    step: int, num_modules: int, k_min: int, decrement: int, interval: int
) -> int:
    """k(t) = max(M - r - floor(t / N) * r, k_min) with r = ``decrement``, N = ``interval``."""
    return max(num_modules - decrement - (step // interval) * decrement, k_min)


class SimpleTopKSelection(AbsSelection):
    """Simple-Top-k: straight-through top-k of learned module scores.

    Args:
        masks, **common: see :class:`AbsSelection` (step 1's length, subnet_weight,
            score_lr, score_weight_decay).
        k_min: smallest k of the annealing (default: the smallest named size).
        anneal_decrement: r, modules removed from k per interval.
        anneal_interval: N, steps per decrement; default: reach ``k_min`` after
            ``anneal_end`` of step 1.
        anneal_end: fraction of step 1 after which k stays at ``k_min`` (default 0.8).
        init_std: standard deviation of the scores' initialisation (around 0).
        temperature: tau of the relaxed k-hot (see :func:`relaxed_khot`).
        masked_modules: ``skip`` (default, faster) or ``compute`` (the authors'; see the module
            docstring).
    """

    def __init__(
        self,
        masks: Dict[str, Sequence[int]],
        k_min: Optional[int] = None,
        anneal_decrement: int = 1,
        anneal_interval: Optional[int] = None,
        anneal_end: float = 0.8,
        init_std: float = 1e-3,
        temperature: float = 0.5,
        masked_modules: str = "skip",
        **common,
    ):
        super().__init__(masks, **common)
        if k_min is not None:
            if not 0 < k_min < self.num_modules:
                raise ValueError(f"k_min must be in 1..{self.num_modules - 1}, got {k_min}")
            self.k_min = k_min
        if anneal_decrement < 1:
            raise ValueError("anneal_decrement must be >= 1")
        self.anneal_decrement = anneal_decrement
        self.anneal_interval = anneal_interval
        self.anneal_end = anneal_end
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        if masked_modules not in MASKED_MODULES:
            raise ValueError(f"masked_modules must be one of {', '.join(MASKED_MODULES)}, "
                             f"got {masked_modules!r}")
        self.masked_modules = masked_modules
        self.score = torch.nn.Parameter(torch.randn(self.num_modules) * init_std)

    def scores(self) -> torch.Tensor:
        return self.score

    def interval(self) -> int:
        """N: steps between two decrements of k."""
        if self.anneal_interval is not None:
            return self.anneal_interval
        decrements = math.ceil(
            max(self.num_modules - self.anneal_decrement - self.k_min, 0)
            / self.anneal_decrement
        )
        return max(1, int(self.anneal_end * int(self.total_steps)) // max(decrements, 1))

    def k_at(self, step: int) -> int:
        """k of the scored subnet at step-1 ``step``."""
        return annealed_k(step, self.num_modules, self.k_min, self.anneal_decrement,
                          self.interval())

    def subnet_gates(self, step: int) -> Tuple[List[Gate], Dict[str, torch.Tensor]]:
        k = self.k_at(step)
        z = straight_through_topk(relaxed_khot(self.score, k, self.temperature), k)
        if self.masked_modules == "compute":  # every module runs, times its 0 / 1 gate
            return list(z.unbind()), {"selection_k": torch.tensor(float(k))}
        hard = z.detach().round().tolist()
        gates: List[Gate] = [z[j] if hard[j] else 0 for j in range(self.num_modules)]
        return gates, {"selection_k": torch.tensor(float(k))}

    def ranking(self) -> List[int]:
        return stable_ranking(self.score.detach().tolist())
