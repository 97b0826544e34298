"""Feed-forward module with prunable hidden chunks (component-wise elasticity).

OrthoSoftmax (Xu et al., ICASSP 2025) splits each FFN's hidden layer into ``c`` equal
chunks: chunk ``u`` is a slice of W1's rows (and bias) and of W2's columns. A subnet that
keeps some chunks multiplies with the sliced weights only, so its cost shrinks with the
chunks it drops. Its dropout can follow its width (adaptive FFN dropout).
"""

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.conformer.swish import Swish
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)

from espnet_supernet.nets.fast_dropout import dropout
from espnet_supernet.nets.unit_gates import Gate, UnitSlice, cached_slice, select_rows


def elastic_feed_forward(
    ff: PositionwiseFeedForward,
    x: torch.Tensor,
    gate: Gate,
    adaptive_dropout: bool = True,
) -> torch.Tensor:
    """ESPnet's ``PositionwiseFeedForward`` on (B, T, D) with chunk gates.

    Args:
        ff: the module (its weights are shared by every subnet); ESPnet's
            ``MultiLayeredConv1d`` / ``Conv1dLinear`` (``positionwise_layer_type: conv1d``
            / ``conv1d-linear``) run whole, as their own forward.
        x: input (B, T, D).
        gate: a :class:`UnitSlice` (sliced computation), a 1-d tensor of chunk weights
            (full computation, hidden chunk ``u`` scaled by ``gate[u]``) or anything else
            (every unit, as the module's own forward; scaling is the caller's job).
        adaptive_dropout: scale the hidden dropout by the fraction of kept chunks (for
            soft chunk weights: by their mean, detached).

    Returns:
        (B, T, D).
    """
    if not isinstance(ff, PositionwiseFeedForward):  # conv1d / conv1d-linear: whole only
        if isinstance(gate, UnitSlice) or (isinstance(gate, torch.Tensor) and gate.dim() == 1):
            raise ValueError(f"{type(ff).__name__} cannot keep some hidden chunks: "
                             "ffn_chunks > 1 needs positionwise_layer_type: linear")
        return ff(x)
    p = ff.dropout.p
    if isinstance(gate, UnitSlice):
        w_1, b_1, w_2 = ff.w_1.weight, ff.w_1.bias, ff.w_2.weight
        hidden = activation(ff, F.linear(
            x, cached_slice(gate, "w_1", (w_1,), lambda: select_rows(w_1, gate)),
            cached_slice(gate, "b_1", (b_1,), lambda: select_rows(b_1, gate))))
        if adaptive_dropout:
            p = p * gate.fraction
        hidden = dropout(hidden, p, ff.training)
        return F.linear(
            hidden, cached_slice(gate, "w_2", (w_2,), lambda: select_rows(w_2, gate, dim=1)),
            ff.w_2.bias)
    if isinstance(gate, torch.Tensor) and gate.dim() == 1:
        hidden = activation(ff, ff.w_1(x))
        chunks = gate.numel()
        hidden = (hidden.unflatten(-1, (chunks, -1)) * gate[:, None]).flatten(-2)
        if adaptive_dropout:
            p = p * float(gate.detach().clamp(0, 1).mean())
        return ff.w_2(dropout(hidden, p, ff.training))
    return ff.w_2(dropout(activation(ff, ff.w_1(x)), p, ff.training))


def activation(ff: PositionwiseFeedForward, hidden: torch.Tensor) -> torch.Tensor:
    """The module's activation; ESPnet's ``Swish`` (x * sigmoid(x), two passes) as the
    fused ``F.silu`` (the same function, one pass over the (B, T, hidden) tensor)."""
    return F.silu(hidden) if type(ff.activation) is Swish else ff.activation(hidden)
