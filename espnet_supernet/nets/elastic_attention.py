"""Self-attention with prunable heads (component-wise elasticity).

OrthoSoftmax (Xu et al., ICASSP 2025) prunes attention per head: head ``h`` is a slice of
the q/k/v projections' rows (and, with relative positions, of the position projection and
the two position biases) and of the output projection's columns. A subnet that keeps some
heads projects, attends and mixes with the sliced weights only.

Supported: ESPnet's ``MultiHeadedAttention`` (``selfattn``) and
``RelPositionMultiHeadedAttention`` (``rel_selfattn`` with ``rel_pos_type: latest``).
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.transformer.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
)

from espnet_supernet.nets.unit_gates import Gate, UnitSlice, cached_slice, select_rows

SLICEABLE_ATTENTION = (MultiHeadedAttention, RelPositionMultiHeadedAttention)


def check_sliceable(att: torch.nn.Module) -> None:
    """Raise unless ``att`` is an attention class whose heads can be sliced."""
    if type(att) not in SLICEABLE_ATTENTION or getattr(att, "use_sdpa", False):
        raise ValueError(
            f"prune_heads supports selfattention_layer_type selfattn or rel_selfattn with "
            f"rel_pos_type latest; got {type(att).__name__}"
        )


def elastic_self_attention(
    att: MultiHeadedAttention,
    x: torch.Tensor,
    pos_emb: Optional[torch.Tensor],
    mask: torch.Tensor,
    gate: Gate,
) -> torch.Tensor:
    """Self-attention of (B, T, D) with head gates.

    Args:
        att: the attention module (weights shared by every subnet).
        x: query = key = value input (B, T, D).
        pos_emb: relative positional embedding (1, 2T-1, D) for ``rel_selfattn``, else None.
        mask: (B, 1, T) non-padding mask.
        gate: a :class:`UnitSlice` (only the kept heads, sliced weights), a 1-d tensor of
            head weights (every head computed, head ``h``'s context scaled by
            ``gate[h]`` before the output projection), or anything else (every head, the
            module's own scale applied by the caller). Attention classes other than
            ``SLICEABLE_ATTENTION``, and every head while tracing (ONNX export), run
            the module's own forward.

    Returns:
        (B, T, D).
    """
    sliced = gate if isinstance(gate, UnitSlice) else None
    head_weights = gate if isinstance(gate, torch.Tensor) and gate.dim() == 1 else None
    if (type(att) not in SLICEABLE_ATTENTION or getattr(att, "use_sdpa", False)
            or (sliced is None and head_weights is None
                and (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()))):
        return att(x, x, x, pos_emb, mask) if pos_emb is not None else att(x, x, x, mask)

    def rows_of(name: str, params: Tuple[torch.Tensor, ...], dim: int = 0) -> torch.Tensor:
        """The kept heads' rows (columns) of ``params``, concatenated (cached)."""
        return cached_slice(sliced, name, params, lambda: torch.cat(
            [select_rows(t, sliced, dim) for t in params], dim=dim))

    def project(linear: torch.nn.Linear, inp: torch.Tensor, name: str) -> torch.Tensor:
        if sliced is None:  # the module itself (also when quantized)
            return linear(inp)
        bias = None if linear.bias is None else rows_of(name + ".b", (linear.bias,))
        return F.linear(inp, rows_of(name + ".w", (linear.weight,)), bias)

    n_batch, d_k = x.size(0), att.d_k
    linears = (att.linear_q, att.linear_k, att.linear_v)
    if sliced is not None:  # one matmul for q, k and v: small slices run faster fused
        weight = rows_of("qkv.w", tuple(lin.weight for lin in linears))
        bias = rows_of("qkv.b", tuple(lin.bias for lin in linears))
        q, k, v = F.linear(x, weight, bias).chunk(3, dim=-1)
    else:
        q, k, v = (project(lin, x, "") for lin in linears)
    q = q.unflatten(-1, (-1, d_k))  # (B, T, h', d_k)
    k = k.unflatten(-1, (-1, d_k)).transpose(1, 2)
    v = v.unflatten(-1, (-1, d_k)).transpose(1, 2)
    q, k = att.q_norm(q), att.k_norm(k)  # LayerNorm over d_k (identity without qk_norm)
    if isinstance(att, RelPositionMultiHeadedAttention):
        p = project(att.linear_pos, pos_emb, "pos").unflatten(-1, (-1, d_k)).transpose(1, 2)
        bias_u, bias_v = att.pos_bias_u, att.pos_bias_v
        if sliced is not None:
            heads = sliced.units.to(x.device)
            bias_u = cached_slice(sliced, "u", (bias_u,), lambda: bias_u.index_select(0, heads))
            bias_v = cached_slice(sliced, "v", (bias_v,), lambda: bias_v.index_select(0, heads))
        # the position scores pre-scaled by 1/sqrt(d_k) (one pass less over T x T)
        matrix_bd = position_scores((q + bias_v) * (1.0 / math.sqrt(d_k)), p)
        context = attend(att, (q + bias_u).transpose(1, 2), k, v, mask,
                         position_scores=relative_shift(att, matrix_bd))
    else:
        context = attend(att, q.transpose(1, 2), k, v, mask)
    if head_weights is not None:
        context = context * head_weights[None, :, None, None]
    context = context.transpose(1, 2).reshape(n_batch, -1, context.size(1) * d_k)
    if sliced is None:
        return att.linear_out(context)
    return F.linear(context, rows_of("out.w", (att.linear_out.weight,), dim=1),
                    att.linear_out.bias)


def position_scores(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Query-position scores ``q p^T`` of every head: (B, T, h, d_k) x (1 or B, h, 2T-1,
    d_k) -> (B, h, T, 2T - 1).

    With one position table for the batch (ESPnet's relative encodings), this is one
    matmul per head over all B x T query rows; the result is a (B, h)-permuted view of
    an (h, B, T, 2T - 1) tensor. ``torch.matmul`` on the (B, h, ...) layout would copy
    the table B times and multiply B x h small matrices (~35% of the attention's time
    at demo width).
    """
    if p.size(0) != 1:
        return torch.matmul(q.transpose(1, 2), p.transpose(-2, -1))
    b, t, h, d = q.shape
    rows = q.permute(2, 0, 1, 3).reshape(h, b * t, d)
    scores = torch.bmm(rows, p[0].transpose(-2, -1))  # (h, B*T, 2T-1)
    return scores.unflatten(1, (b, t)).transpose(0, 1)


def relative_shift(att: RelPositionMultiHeadedAttention, scores: torch.Tensor
                   ) -> torch.Tensor:
    """ESPnet's ``rel_shift`` (``rel_pos_type: latest``): (B, h, T, 2T - 1) scores by
    relative position -> (B, h, T, T) by key position, ``out[..., i, j] =
    scores[..., i, T - 1 - i + j]``.

    Without gradients this is a strided view (no copy; any batch and head strides, rows
    contiguous); with them, ESPnet's own pad-and-reshape (whose backward is a plain
    copy).
    """
    T = scores.size(2)
    if torch.is_grad_enabled() and scores.requires_grad or att.zero_triu \
            or scores.stride()[2:] != (2 * T - 1, 1) or scores.size(3) != 2 * T - 1:
        return att.rel_shift(scores)
    b, h = scores.shape[:2]
    return scores.as_strided((b, h, T, T), (scores.stride(0), scores.stride(1), 2 * T - 2, 1),
                             scores.storage_offset() + T - 1)


def attend(
    att: MultiHeadedAttention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor,
    position_scores: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d_k) + position_scores) v over the non-padded keys.

    Args:
        att: the attention module (its dropout).
        q, k, v: (B, h', T, d_k).
        mask: (B, 1, T) non-padding mask of the keys.
        position_scores: (B, h', T, T) relative-position term, already divided by
            sqrt(d_k), or None.

    Returns:
        context (B, h', T, d_k).

    Runs as one fused ``scaled_dot_product_attention``: 10-25% faster on this CPU than
    ESPnet's separate matmul / mask / softmax / matmul, same result to ~1e-7.
    """
    pad = mask.unsqueeze(1).eq(0)  # (B, 1, 1, T)
    if position_scores is None:
        bias = ~pad
    else:  # adding a (B, 1, 1, T) 0/-inf row is ~3x faster than masked_fill on the
        # shifted (overlapping) view of the scores
        bias = position_scores + torch.zeros(
            pad.shape, dtype=position_scores.dtype, device=pad.device
        ).masked_fill_(pad, float("-inf"))
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias, dropout_p=att.dropout.p if att.training else 0.0)
