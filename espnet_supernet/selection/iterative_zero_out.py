"""Iterative-Zero-Out selection (Dynamic Encoder Size, Xu et al., Interspeech 2024).

Every module has a sigmoid gate g = sigmoid(s), s initialised at 10 (gate ~1). Step 1 is
split into iterations; during iteration i a sparsity loss pulls the number of closed gates
towards n_i, the modules to remove after it, and at the end of the iteration the n_i
lowest-scoring modules are set to s = -5. The scored subnet runs with the soft gates.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_supernet.nets.unit_gates import Gate
from espnet_supernet.selection.abs_selection import AbsSelection


def sparsity_loss(scores: torch.Tensor, num_removed: int) -> torch.Tensor:
    """|(M - sum sigmoid(s)) / M - n / M| for scores (M,) and n = ``num_removed``."""
    m = scores.numel()
    return torch.abs((m - torch.sigmoid(scores).sum()) / m - num_removed / m)


class IterativeZeroOutSelection(AbsSelection):
    """Iterative-Zero-Out: sigmoid gates, sparsity loss, lowest modules zeroed per iteration.

    Args:
        masks, **common: see :class:`AbsSelection` (step 1's length, subnet_weight,
            score_lr, score_weight_decay).
        num_removed: n_i, modules removed after each iteration (increasing). Default: one
            iteration per named size below the largest, removing down to it
            (e.g. M = 24, sizes {8, 16, 24}: [8, 16]).
        sparsity_weight: weight of the sparsity loss (5 in the paper).
        init_score: initial s (10: every gate open).
        zero_score: s given to removed modules (-5).

    The ranking keeps modules never removed first (by score), then those removed
    latest, so the named sizes are nested and follow the iterations.
    """

    def __init__(
        self,
        masks: Dict[str, Sequence[int]],
        num_removed: Optional[Sequence[int]] = None,
        sparsity_weight: float = 5.0,
        init_score: float = 10.0,
        zero_score: float = -5.0,
        **common,
    ):
        super().__init__(masks, **common)
        if num_removed is None:
            num_removed = sorted(self.num_modules - k for k in set(self.sizes.values())
                                 if k < self.num_modules)
        num_removed = [int(n) for n in num_removed]
        if not num_removed or num_removed != sorted(num_removed) or not (
            0 < num_removed[0] and num_removed[-1] < self.num_modules
        ):
            raise ValueError(
                f"num_removed must increase within 1..{self.num_modules - 1}, got {num_removed}"
            )
        self.num_removed = num_removed
        self.sparsity_weight = sparsity_weight
        self.zero_score = zero_score
        self.score = torch.nn.Parameter(torch.full((self.num_modules,), float(init_score)))
        # iteration after which each module was removed (0: never)
        self.register_buffer("removed_after", torch.zeros(self.num_modules, dtype=torch.long))

    def scores(self) -> torch.Tensor:
        return self.score

    def iteration_length(self) -> int:
        return max(1, int(self.total_steps) // len(self.num_removed))

    def iteration(self, step: int) -> int:
        """1-based iteration of step-1 ``step``."""
        return min(step // self.iteration_length() + 1, len(self.num_removed))

    def subnet_gates(self, step: int) -> Tuple[List[Gate], Dict[str, torch.Tensor]]:
        gates = torch.sigmoid(self.score)
        return list(gates.unbind(0)), {"gate_sum": gates.detach().sum()}

    def regularizer(self, step: int) -> torch.Tensor:
        target = self.num_removed[self.iteration(step) - 1]
        return self.sparsity_weight * sparsity_loss(self.score, target)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """At the end of iteration i, set the n_i lowest scores to ``zero_score``."""
        i = self.iteration(step)
        last = step + 1 == int(self.total_steps) or (
            (step + 1) % self.iteration_length() == 0 and i < len(self.num_removed)
        )
        if not last:
            return
        lowest = self.ranking()[self.num_modules - self.num_removed[i - 1]:]
        for j in lowest:
            if int(self.removed_after[j]) == 0:
                self.removed_after[j] = i
        self.score[lowest] = self.zero_score

    def ranking(self) -> List[int]:
        removed = self.removed_after.tolist()
        score = self.score.detach().tolist()
        # never removed (0) first, then later removals first; by score within a group
        return sorted(range(self.num_modules),
                      key=lambda j: (removed[j] != 0, -removed[j], -score[j], j))
