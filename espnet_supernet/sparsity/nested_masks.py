"""Magnitude masks for several sparsity levels at once, nested by construction.

Every element gets a rank by its score (ascending, ties broken by position, so the
ranking is deterministic and identical on every DDP rank). At sparsity s the
``round(s * n)`` lowest-ranked elements are pruned. One ``uint8`` tensor per scored
tensor stores the "keep level": how many of the (ascending) levels keep the element, so
the mask of level ``i`` is ``keep > i`` and a mask at a higher sparsity is always a subset
of the masks at lower ones (Omni-sparsity's shared weights, Yang et al. 2022).
"""

from typing import List, Sequence

import torch


def pruned_count(sparsity: float, numel: int) -> int:
    """Elements pruned at ``sparsity`` out of ``numel``: round half up of s * n."""
    return int(sparsity * numel + 0.5)


def check_levels(levels: Sequence[float]) -> List[float]:
    """``levels`` as floats, strictly ascending, each in [0, 1), at most 255."""
    levels = [float(s) for s in levels]
    if not levels or len(levels) > 255:
        raise ValueError(f"give 1 to 255 sparsity levels, got {len(levels)}")
    if any(not 0.0 <= s < 1.0 for s in levels):
        raise ValueError(f"sparsity levels must be in [0, 1), got {levels}")
    if any(b <= a for a, b in zip(levels, levels[1:])):
        raise ValueError(f"sparsity levels must be strictly ascending, got {levels}")
    return levels


@torch.no_grad()
def keep_levels(scores: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """Keep level (uint8, shape of ``scores``) of every element for ascending ``levels``:
    element e is kept at level i iff ``keep[e] > i``."""
    flat = scores.detach().flatten()
    order = torch.argsort(flat, stable=True)  # lowest score first
    rank = torch.empty_like(order)
    rank[order] = torch.arange(flat.numel(), device=flat.device)
    keep = torch.zeros(flat.numel(), dtype=torch.uint8, device=flat.device)
    for s in levels:
        keep += (rank >= pruned_count(s, flat.numel())).to(torch.uint8)
    return keep.view(scores.shape)


@torch.no_grad()
def global_keep_levels(scores: Sequence[torch.Tensor],
                       levels: Sequence[float]) -> List[torch.Tensor]:
    """Keep levels of several tensors ranked together (one global threshold per level)."""
    flat = torch.cat([s.detach().flatten().float() for s in scores])
    keep = keep_levels(flat, levels)
    return [k.view(s.shape) for k, s in zip(keep.split([s.numel() for s in scores]), scores)]
