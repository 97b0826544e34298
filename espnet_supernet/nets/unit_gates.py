"""Gates of prunable modules: what a subnet does with each module of a block.

A gate is one of
- ``0``: the module is skipped (its forward is never called);
- ``1`` (or another float): the whole module runs, its output scaled by the value;
- a 0-d tensor: a soft, differentiable scale (layer-wise selection methods);
- a (B, 1, 1) tensor: the whole module runs, each utterance's output scaled by its own
  value (per-utterance stochastic depth: 0 or 1 / (1 - p));
- a 1-d tensor with one weight per unit (FFN hidden chunk or attention head): the whole
  module runs and each unit's contribution is weighted (component-wise selection);
- a :class:`UnitSlice`: only the kept units run, with sliced weights (smaller matmuls).
"""

from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch


class UnitSlice(NamedTuple):
    """Hard selection of some units of a module, computed with sliced weights.

    Attributes:
        rows: (R,) long, the kept rows of the module's hidden dimension (FFN hidden
            units, or attention feature dims ``head * d_k + i``), ascending.
        units: (k,) long, the kept unit ids (chunks or heads), ascending.
        fraction: kept units / units of the module (adaptive FFN dropout scales by it).
        span: [start, stop) when ``rows`` is one contiguous range (weights are then sliced
            as views, without a copy), else None.
        scale: factor on the module's output (stochastic depth's 1 / (1 - p); per
            utterance a (B, 1, 1) tensor).
        weights: inference cache of the sliced weights (see :func:`cached_slice`).
    """

    rows: torch.Tensor
    units: torch.Tensor
    fraction: float
    span: Optional[Tuple[int, int]] = None
    scale: Union[float, torch.Tensor] = 1.0
    weights: Optional[Dict[tuple, tuple]] = None

    @classmethod
    def of(cls, rows: List[int], units: List[int], fraction: float,
           device: Optional[torch.device] = None) -> "UnitSlice":
        """From ascending Python lists (detects a contiguous ``rows`` range)."""
        span = (rows[0], rows[-1] + 1) if rows[-1] - rows[0] + 1 == len(rows) else None
        return cls(torch.tensor(rows, device=device), torch.tensor(units, device=device),
                   fraction, span, weights={})


def select_rows(weight: torch.Tensor, gate: UnitSlice, dim: int = 0) -> torch.Tensor:
    """The kept rows (``dim=0``) or columns (``dim=1``) of ``weight`` (a view when they
    are contiguous)."""
    if gate.span is not None:
        return weight.narrow(dim, gate.span[0], gate.span[1] - gate.span[0])
    return weight.index_select(dim, gate.rows.to(weight.device))


def cached_slice(gate: UnitSlice, name: str, sources: Sequence[torch.Tensor],
                 build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``build()`` (a slice of the ``sources`` parameters), kept in ``gate`` while no
    gradient is needed and the sources are unchanged.

    Inference then multiplies with weights sliced once per subnet, contiguous, instead of
    gathering and concatenating them on every call (those small copies were ~5-10% of a
    sliced module's time at demo width). A source's in-place update (optimizer step,
    ``load_state_dict``) bumps its version and rebuilds the slice; with gradients enabled
    nothing is cached, so training slices the live parameters.
    """
    if gate.weights is None or torch.is_grad_enabled():
        return build()
    key = (name,) + tuple(id(t) for t in sources)
    stamp = tuple(t._version for t in sources)
    hit = gate.weights.get(key)
    if hit is None or hit[0] != stamp:
        hit = gate.weights[key] = (stamp, build().contiguous())
    return hit[1]


Gate = Union[float, torch.Tensor, UnitSlice]


def is_skipped(gate: Gate) -> bool:
    """True for a hard zero gate: the module costs nothing."""
    return not isinstance(gate, (torch.Tensor, UnitSlice)) and gate == 0


def scale_gate(gate: Gate, factor: float) -> Gate:
    """The gate with its output scaled by ``factor`` (a skipped module stays skipped)."""
    if isinstance(gate, UnitSlice):
        return gate._replace(scale=gate.scale * factor)
    return gate * factor
