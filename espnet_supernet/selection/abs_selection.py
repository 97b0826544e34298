"""Base class of the subnet selection methods: who decides each named size's mask.

A selection method owns the module scores (if it learns any) and the schedule of its
"step 1" (Dynamic Encoder Size, Xu et al. 2024): for the first part of training the
supernet is trained together with one scored subnet; then the mask of every named size is
frozen as the top-k modules by score, and the rest of training is the sandwich rule on those
fixed masks (the model's job, see ``train/supernet_asr_model.py``).
"""

import logging
from abc import ABC, abstractmethod
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from espnet_supernet.nets.unit_gates import Gate

SCORE_GROUPS = ("own", "model")


class AbsSelection(torch.nn.Module, ABC):
    """Scores prunable modules and fixes the named subnets' masks.

    Args:
        masks: the named subnets' masks from ``encoder_conf`` (smallest first); a learned
            method keeps only their module counts and replaces the masks.
        selection_steps: length of step 1 in training steps (batches); or
        selection_epochs: length of step 1 in epochs; or
        selection_fraction: length of step 1 as a fraction of ``max_epoch`` (rounded,
            at least one epoch). Default: 0.6, as in the paper's released configs.
        subnet_weight: weight of the scored subnet's loss in step 1 (0.3 in the paper).
        score_group: ``"own"`` (the scores get an optimizer group of their own, with
            ``score_lr`` and ``score_weight_decay``) or ``"model"`` (they are in the
            model's group: its lr schedule and weight decay, as the authors' code).
        score_lr: learning rate of the scores' own group (None: the model's).
        score_weight_decay: weight decay of the scores' own group.

    Buffers (saved with the model, so ``--resume`` continues the same selection):
        ``total_steps``: step 1's length in steps, -1 until known.
        ``frozen``: whether the masks have been fixed (step 2).
    """

    learned: bool = True

    def __init__(
        self,
        masks: Dict[str, Sequence[int]],
        selection_steps: Optional[int] = None,
        selection_epochs: Optional[int] = None,
        selection_fraction: Optional[float] = None,
        subnet_weight: float = 0.3,
        score_group: str = "own",
        score_lr: Optional[float] = None,
        score_weight_decay: float = 0.0,
    ):
        super().__init__()
        if score_group not in SCORE_GROUPS:
            raise ValueError(f"score_group must be one of {', '.join(SCORE_GROUPS)}, "
                             f"got {score_group!r}")
        if score_group == "model" and (score_lr is not None or score_weight_decay != 0.0):
            raise ValueError("score_lr and score_weight_decay configure the scores' own "
                             "group: remove them with score_group: model")
        given = [v is not None for v in (selection_steps, selection_epochs, selection_fraction)]
        if sum(given) > 1:
            raise ValueError(
                "give at most one of selection_steps, selection_epochs, selection_fraction"
            )
        if not any(given):
            selection_fraction = 0.6
        if selection_fraction is not None and not 0.0 < selection_fraction < 1.0:
            raise ValueError(f"selection_fraction must be in (0, 1), got {selection_fraction}")
        self.num_modules = len(next(iter(masks.values())))
        self.sizes = {name: int(sum(mask)) for name, mask in masks.items()}
        self.k_min = min(self.sizes.values())
        self.selection_epochs = selection_epochs
        self.selection_fraction = selection_fraction
        self.subnet_weight = subnet_weight
        self.score_group = score_group
        self.score_lr = score_lr
        self.score_weight_decay = score_weight_decay
        steps = -1 if selection_steps is None else int(selection_steps)
        self.register_buffer("total_steps", torch.tensor(steps, dtype=torch.long))
        self.register_buffer("frozen", torch.tensor(not self.learned))

    @classmethod
    def subnet_names_from_conf(cls, conf: Dict) -> Optional[List[str]]:
        """Named subnets a method defines itself from its ``selection_conf`` (e.g.
        OrthoSoftmax's budgets), or None to use the sizes of ``encoder_conf``."""
        return None

    def bind_encoder(self, encoder: torch.nn.Module) -> None:
        """Called by the task once the encoder exists (e.g. to read its costs)."""

    # ------------------------------------------------------------------ schedule
    def plan_steps(self, steps_per_epoch: int, max_epoch: int) -> int:
        """Fix step 1's length from the epoch size (first call wins; kept on resume)."""
        if int(self.total_steps) < 0:
            epochs = self.selection_epochs
            if epochs is None:
                epochs = max(1, round(self.selection_fraction * max_epoch))
            if epochs >= max_epoch:
                logging.warning(
                    f"selection takes {epochs} of {max_epoch} epochs: the masks freeze "
                    "only if training is resumed with a larger max_epoch"
                )
            self.total_steps.fill_(epochs * steps_per_epoch)
        return int(self.total_steps)

    def in_selection(self, step: int) -> bool:
        """True while ``step`` belongs to step 1 (scores still learning)."""
        if bool(self.frozen):
            return False
        if int(self.total_steps) < 0:
            raise RuntimeError(
                "the selection's length is unknown: train with espnet_supernet's trainer "
                "(python -m espnet_supernet.bin.asr_train) or give selection_steps"
            )
        return step < int(self.total_steps)

    # ------------------------------------------------------------------ method
    @abstractmethod
    def ranking(self) -> List[int]:
        """Module indices from the most to the least important."""

    @abstractmethod
    def subnet_gates(self, step: int) -> Tuple[List[Gate], Dict[str, torch.Tensor]]:
        """Gates of the scored subnet for step-1 ``step`` (0 = module skipped), and stats."""

    def regularizer(self, step: int) -> Optional[torch.Tensor]:
        """Extra loss term of step 1 (already weighted), or None."""
        return None

    def after_step(self, step: int) -> None:
        """Called after the forward of step-1 ``step`` (e.g. to zero out modules)."""

    def report_fields(self) -> Dict:
        """Method-specific entries of ``selection.yaml`` (e.g. budgets)."""
        return {}

    def scores(self) -> Optional[torch.Tensor]:
        """The learned scores (M,), or None."""
        return None

    # ------------------------------------------------------------------ masks
    def masks(self) -> Dict[str, List[int]]:
        """Every named size's mask: its top-k modules of :meth:`ranking` (nested)."""
        order = self.ranking()
        out = {}
        for name, k in self.sizes.items():
            keep = set(order[:k])
            out[name] = [1 if j in keep else 0 for j in range(self.num_modules)]
        return out

    def freeze(self) -> Dict[str, List[int]]:
        """End step 1: fix the masks and return them."""
        self.frozen.fill_(True)
        return self.masks()


def stable_ranking(values: Sequence[float]) -> List[int]:
    """Indices sorted by descending value, ties broken by index (deterministic)."""
    return sorted(range(len(values)), key=lambda j: (-values[j], j))
