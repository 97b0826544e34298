"""Multi-head state-space layer (MH-SSM; Fathullah et al., "Multi-Head State Space Model
for Speech Recognition", Interspeech 2023), the replacement of self-attention in the
blocks of TODM's encoder (Shangguan et al., ICASSP 2024).

The input (B, T, D) is projected and split into H heads of c = D / H channels (or
``head_dim``); every channel is a causal diagonal SSM
(:class:`~espnet_supernet.nets.diagonal_ssm.DiagonalSSM`). Heads gate each other in pairs,
head 2i's output times sigmoid(head 2i+1's) (the paper's inter-head gating; which heads
pair up is this implementation's choice), and the H / 2 x c gated channels are projected
back to D. Everything is causal, so :meth:`forward_chunk`
streams with the SSM state carried between chunks.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from espnet_supernet.nets.diagonal_ssm import DiagonalSSM


class MultiHeadSSM(torch.nn.Module):
    """(B, T, D) -> (B, T, D) with H gated SSM heads.

    Args:
        d_model: D.
        heads: H, even, dividing D.
        state_size: complex modes per channel (see ``DiagonalSSM``).
        dropout_rate: dropout on the gated heads.
        head_dim: SSM channels per head (default D / H; smaller in an exported narrow
            TODM size).
    """

    def __init__(self, d_model: int, heads: int = 4, state_size: int = 32,
                 dropout_rate: float = 0.0, head_dim: Optional[int] = None):
        super().__init__()
        if heads % 2 or (head_dim is None and d_model % heads):
            raise ValueError(f"MH-SSM needs an even head count dividing d_model={d_model}, "
                             f"got {heads}")
        self.heads, self.head_dim = heads, head_dim or d_model // heads
        inner = heads * self.head_dim
        self.in_proj = torch.nn.Linear(d_model, inner)
        self.ssm = DiagonalSSM(inner, state_size)
        self.out_proj = torch.nn.Linear(inner // 2, d_model)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def _gate(self, y: torch.Tensor) -> torch.Tensor:
        """(B, T, H * c) head outputs -> (B, T, H/2 * c): even heads gated by odd heads."""
        y = y.unflatten(-1, (self.heads // 2, 2, -1))
        return (y[..., 0, :] * torch.sigmoid(y[..., 1, :])).flatten(-2)

    def width_channels(self, width: int) -> "tuple[torch.Tensor, torch.Tensor]":
        """Indices of a narrower layer keeping the first ``width`` channels of every head:
        (H * width,) SSM channels and (H/2 * width,) gated channels (out_proj columns)."""
        device = self.in_proj.weight.device
        first = torch.arange(width, device=device)
        ssm = (torch.arange(self.heads, device=device)[:, None] * self.head_dim + first)
        gated = (torch.arange(self.heads // 2, device=device)[:, None] * self.head_dim + first)
        return ssm.flatten(), gated.flatten()

    def forward(self, x: torch.Tensor, width: Optional[int] = None) -> torch.Tensor:
        """Whole sequences (zero initial state); ``width`` < D / H keeps that many channels
        per head, computing with the sliced weights only (elastic width)."""
        if width is None or width >= self.head_dim:
            return self.out_proj(self.dropout(self._gate(self.ssm(self.in_proj(x)))))
        ssm_idx, gated_idx = self.width_channels(width)
        u = F.linear(x, self.in_proj.weight.index_select(0, ssm_idx),
                     self.in_proj.bias.index_select(0, ssm_idx))
        gated = self.dropout(self._gate(self.ssm(u, ssm_idx)))
        return F.linear(gated, self.out_proj.weight.index_select(1, gated_idx),
                        self.out_proj.bias)

    def forward_chunk(self, x: torch.Tensor, state: Optional[torch.Tensor] = None,
                      width: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Streaming: a chunk (B, L, D) after ``state`` -> output, the state after it;
        ``width`` as in :meth:`forward` (the state then holds only the kept channels)."""
        if width is None or width >= self.head_dim:
            y, state = self.ssm.forward_chunk(self.in_proj(x), state)
            return self.out_proj(self.dropout(self._gate(y))), state
        ssm_idx, gated_idx = self.width_channels(width)
        u = F.linear(x, self.in_proj.weight.index_select(0, ssm_idx),
                     self.in_proj.bias.index_select(0, ssm_idx))
        y, state = self.ssm.forward_chunk(u, state, ssm_idx)
        return F.linear(self.dropout(self._gate(y)), self.out_proj.weight.index_select(1, gated_idx),
                        self.out_proj.bias), state
