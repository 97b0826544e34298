"""A linear layer with one weight set per named subnet (e.g. per-size CTC heads)."""

from typing import Optional

import torch


class SwitchableLinear(torch.nn.Module):
    """One ``Linear`` head per slot; the active slot answers ``forward``.

    Used to give each subnet of a supernet its own CTC output layer, as in RWTH's Dynamic
    Encoder Size setup. ``active_slot = None`` selects the last (largest) head.

    Args:
        linear: the layer to replicate; every head starts as a copy of it.
        num_slots: number of heads.
    """

    def __init__(self, linear: torch.nn.Linear, num_slots: int):
        super().__init__()
        heads = []
        for _ in range(num_slots):
            head = torch.nn.Linear(linear.in_features, linear.out_features)
            head.load_state_dict(linear.state_dict())
            heads.append(head)
        self.heads = torch.nn.ModuleList(heads).to(linear.weight.device)
        self.active_slot: Optional[int] = None

    def active_head(self) -> torch.nn.Linear:
        """The head of the active slot (the largest when none is set)."""
        return self.heads[-1 if self.active_slot is None else self.active_slot]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features) with the active head."""
        return self.active_head()(x)
