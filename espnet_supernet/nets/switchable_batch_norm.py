"""BatchNorm with one set of running statistics per named subnet."""

from typing import Optional

import torch
import torch.nn.functional as F


class SwitchableBatchNorm1d(torch.nn.BatchNorm1d):
    """``BatchNorm1d`` whose running statistics are kept per subnet ("slot").

    Subnets of a supernet feed differently distributed activations into the same
    BatchNorm, so one set of running statistics fits none of them at eval time (the
    switchable-BN answer of slimmable networks, Yu et al. 2019). The affine weight and
    bias stay shared. The stock buffers (``running_mean``, ``running_var``) keep the
    statistics of every forward (shared statistics): they are what a stock checkpoint
    loads into and what an unnamed subnet uses. ``slot_running_mean/var`` of shape
    ``(num_slots, C)`` hold one set per named subnet; a stock state dict without them
    still loads with ``strict=True`` (they start as copies of the shared statistics).

    Args:
        num_features: channels C.
        num_slots: number of named subnets.
        eps: as ``BatchNorm1d``.
        momentum: as ``BatchNorm1d`` (a float; cumulative averaging is not supported).
    """

    def __init__(
        self, num_features: int, num_slots: int, eps: float = 1e-5, momentum: float = 0.1
    ):
        if momentum is None:
            raise ValueError("SwitchableBatchNorm1d needs a float momentum")
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.register_buffer("slot_running_mean", torch.zeros(num_slots, num_features))
        self.register_buffer("slot_running_var", torch.ones(num_slots, num_features))
        self.active_slot: Optional[int] = None
        self._calibration: Optional[list] = None
        self._register_load_state_dict_pre_hook(self._fill_missing_slots)

    @classmethod
    def from_batch_norm(
        cls, bn: torch.nn.BatchNorm1d, num_slots: int
    ) -> "SwitchableBatchNorm1d":
        """Copy of ``bn`` with every slot initialised to its statistics."""
        new = cls(bn.num_features, num_slots, eps=bn.eps, momentum=bn.momentum)
        new.load_state_dict(bn.state_dict(), strict=False)
        new.reset_slots()
        return new.to(bn.weight.device)

    def _fill_missing_slots(self, state_dict, prefix, *args) -> None:
        for name, shared in (("mean", "running_mean"), ("var", "running_var")):
            key, src = f"{prefix}slot_running_{name}", f"{prefix}{shared}"
            slots = getattr(self, f"slot_running_{name}")
            if key not in state_dict and src in state_dict:
                state_dict[key] = state_dict[src].expand_as(slots).clone()
            elif key in state_dict and state_dict[key].size(0) == 1 < slots.size(0):
                # a checkpoint of one slot (e.g. Omni-sparsity before per-level statistics)
                state_dict[key] = state_dict[key].expand_as(slots).clone()

    @torch.no_grad()
    def resize_slots(self, num_slots: int) -> None:
        """Keep ``num_slots`` sets of statistics, each starting from the shared ones."""
        shape = (num_slots, self.num_features)
        self.slot_running_mean = self.running_mean.expand(shape).clone()
        self.slot_running_var = self.running_var.expand(shape).clone()
        self.active_slot = None

    @torch.no_grad()
    def reset_slots(self) -> None:
        """Set every slot's statistics to the shared ones."""
        self.slot_running_mean.copy_(self.running_mean.expand_as(self.slot_running_mean))
        self.slot_running_var.copy_(self.running_var.expand_as(self.slot_running_var))

    def slot_statistics(self, slot: Optional[int]) -> "tuple[torch.Tensor, torch.Tensor]":
        """(mean, var) used at eval time for ``slot`` (``None`` = shared), shapes (C,)."""
        if slot is None:
            return self.running_mean, self.running_var
        return self.slot_running_mean[slot], self.slot_running_var[slot]

    @property
    def calibrating(self) -> bool:
        """Whether forwards collect batch statistics (see ``start_calibration``)."""
        return self._calibration is not None

    def start_calibration(self) -> None:
        """Collect batch statistics of the following forwards (see ``finish_calibration``).

        While calibrating, the layer normalises with batch statistics, as in training.
        """
        self._calibration = []

    def finish_calibration(self) -> bool:
        """Set the active slot's statistics to the average of the collected batches.

        Returns:
            False (statistics unchanged) when no batch went through the layer, e.g. in a
            module the active subnet skips.
        """
        collected, self._calibration = self._calibration, None
        if not collected:
            return False
        mean = torch.stack([m for m, _ in collected]).mean(0)
        var = torch.stack([v for _, v in collected]).mean(0)
        for stats, value in zip(self.slot_statistics(self.active_slot), (mean, var)):
            stats.copy_(value)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape (B, C, T) with the active slot's statistics."""
        if self._calibration is not None:
            var, mean = torch.var_mean(x.detach(), dim=(0, 2), unbiased=True)
            self._calibration.append((mean, var))
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        slot = self.active_slot
        if slot is None:
            return super().forward(x)
        mean, var = self.slot_statistics(slot)
        if not self.training:
            return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        # Normalise with batch statistics and update this slot's running statistics
        # (``mean``/``var`` are views into the slot buffers), then the shared ones.
        out = F.batch_norm(x, mean, var, self.weight, self.bias, True, self.momentum, self.eps)
        with torch.no_grad():
            # in float32 also under autocast (the buffers' dtype; half-precision sums of
            # squares would lose the statistics)
            batch_var, batch_mean = torch.var_mean(
                x.detach().to(self.running_mean.dtype), dim=(0, 2), unbiased=True)
            self.running_mean.lerp_(batch_mean, self.momentum)
            self.running_var.lerp_(batch_var, self.momentum)
            self.num_batches_tracked.add_(1)
        return out
