"""Static selection: the masks given in ``encoder_conf`` (a rule or explicit masks)."""

from typing import Dict, List, Sequence, Tuple

import torch

from espnet_supernet.nets.unit_gates import Gate
from espnet_supernet.selection.abs_selection import AbsSelection, stable_ranking


class StaticSelection(AbsSelection):
    """No step 1: training is the sandwich rule on the configured masks from the start.

    Args:
        masks: the named subnets' masks from ``encoder_conf``; they are kept as they are.
    """

    learned = False

    def __init__(self, masks: Dict[str, Sequence[int]]):
        super().__init__(masks, selection_steps=0)
        self._masks = {name: [int(v) for v in mask] for name, mask in masks.items()}

    def ranking(self) -> List[int]:
        """Modules by how many named subnets keep them (the static masks' own order)."""
        counts = [sum(mask[j] for mask in self._masks.values())
                  for j in range(self.num_modules)]
        return stable_ranking(counts)

    def masks(self) -> Dict[str, List[int]]:
        """The configured masks, unchanged (they need not be nested)."""
        return {name: list(mask) for name, mask in self._masks.items()}

    def subnet_gates(self, step: int) -> Tuple[List[Gate], Dict[str, torch.Tensor]]:
        raise RuntimeError("static selection has no step 1")
