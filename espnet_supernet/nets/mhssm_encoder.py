"""MH-SSM encoder (``encoder: mhssm``): Conformer-like blocks whose self-attention is a
multi-head state-space layer (Fathullah et al., Interspeech 2023; the encoder of TODM,
Shangguan et al., ICASSP 2024).

Blocks are ESPnet's own ``EncoderLayer`` (macaron FFN, "attention", conv module, FFN,
final LayerNorm) with :class:`~espnet_supernet.nets.multi_head_ssm.MultiHeadSSM` in the
attention slot. The SSM needs no positional encoding and is causal; with
``causal_conv: true`` (default) the conv module only looks back too, so every output frame
depends on past input only (up to the subsampling's receptive field): a streaming encoder,
run chunk by chunk with :meth:`MHSSMEncoder.forward_streaming`.
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet.nets.pytorch_backend.conformer.encoder_layer import EncoderLayer
from espnet.nets.pytorch_backend.nets_utils import get_activation, make_pad_mask
from espnet.nets.pytorch_backend.transformer.layer_norm import LayerNorm
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling
from typeguard import typechecked

from espnet_supernet.nets.chunked_subsampling import (
    can_chunk,
    chunked_subsampling,
    receptive_field,
)
from espnet_supernet.nets.elastic_feed_forward import elastic_feed_forward
from espnet_supernet.nets.fast_dropout import use_fast_dropout
from espnet_supernet.nets.multi_head_ssm import MultiHeadSSM


class SSMSelfAttention(torch.nn.Module):
    """MH-SSM behind ESPnet's self-attention call ``(query, key, value, mask)``.

    Right padding cannot reach earlier frames of a causal layer, so the mask is not
    needed; key and value are the query in ESPnet's encoder layers.
    """

    def __init__(self, d_model: int, heads: int, state_size: int, dropout_rate: float,
                 head_dim: Optional[int] = None):
        super().__init__()
        self.mhssm = MultiHeadSSM(d_model, heads, state_size, dropout_rate, head_dim)

    def forward(self, query, key, value, mask) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.mhssm(query)


class CausalConvolutionModule(ConvolutionModule):
    """ESPnet's Conformer conv module with a left-padded (causal) depthwise convolution."""

    def __init__(self, channels: int, kernel_size: int, activation: torch.nn.Module):
        super().__init__(channels, kernel_size, activation)
        self.depthwise_conv.padding = (0,)
        self.left = kernel_size - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); output t sees inputs t - kernel + 1 .. t."""
        h = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        h = self.depthwise_conv(F.pad(h, (self.left, 0)))
        return self.pointwise_conv2(self.activation(self.norm(h))).transpose(1, 2)

    def forward_chunk(self, x: torch.Tensor, cache: Optional[torch.Tensor] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Streaming: a chunk (B, L, C) after ``cache``, the last kernel - 1 GLU outputs
        (B, C, kernel - 1; zeros at the start) -> output (B, L, C), the cache after it.
        BatchNorm must be in eval mode (per-frame statistics)."""
        h = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        if cache is None:
            cache = h.new_zeros(h.size(0), h.size(1), self.left)
        h = torch.cat([cache, h], dim=2)
        out = self.pointwise_conv2(self.activation(self.norm(self.depthwise_conv(h))))
        return out.transpose(1, 2), h[:, :, h.size(2) - self.left:]


class StreamingState(NamedTuple):
    """What :meth:`MHSSMEncoder.forward_streaming` carries from chunk to chunk.

    Attributes:
        features: input frames (B, n, F) the subsampling has not consumed yet.
        ssm: per block, the MH-SSM state.
        conv: per block, the conv module's cache (B, C, kernel - 1).
    """

    features: torch.Tensor
    ssm: List[Optional[torch.Tensor]]
    conv: List[Optional[torch.Tensor]]


class MHSSMEncoder(AbsEncoder):
    """Conv2d subsampling (4x) and MH-SSM blocks.

    Args:
        input_size: feature dimension.
        output_size: model dimension D.
        ssm_heads: MH-SSM heads (even, dividing D).
        ssm_state_size: complex modes per SSM channel.
        linear_units: FFN hidden size.
        num_blocks: blocks.
        dropout_rate: dropout of the residual branches, the FFNs and the subsampling.
        cnn_module_kernel: depthwise kernel of the conv module (odd).
        causal_conv: left-padded conv module (streaming) or ESPnet's centred one.
        activation_type: FFN and conv activation (ESPnet names).
        normalize_before: pre-norm blocks.
        ssm_head_dim: SSM channels per head (default output_size / ssm_heads; an exported
            narrow TODM size has fewer).
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        ssm_heads: int = 4,
        ssm_state_size: int = 32,
        linear_units: int = 1024,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        cnn_module_kernel: int = 15,
        causal_conv: bool = True,
        activation_type: str = "swish",
        normalize_before: bool = True,
        ssm_head_dim: Optional[int] = None,
    ):
        super().__init__()
        self._output_size = output_size
        self.normalize_before = normalize_before
        self.embed = Conv2dSubsampling(input_size, output_size, dropout_rate,
                                       pos_enc=torch.nn.Dropout(dropout_rate))
        activation = get_activation(activation_type)
        conv_class = CausalConvolutionModule if causal_conv else ConvolutionModule

        def ffn() -> PositionwiseFeedForward:
            return PositionwiseFeedForward(output_size, linear_units, dropout_rate, activation)

        self.encoders = torch.nn.ModuleList(
            EncoderLayer(
                output_size,
                SSMSelfAttention(output_size, ssm_heads, ssm_state_size, dropout_rate,
                                 ssm_head_dim),
                ffn(), ffn(), conv_class(output_size, cnn_module_kernel, activation),
                dropout_rate, normalize_before,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = LayerNorm(output_size) if normalize_before else None
        use_fast_dropout(self)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, None]:
        """Encode (B, L, input_size) of lengths (B,) -> (B, T', D), (B,), None."""
        xs, olens = self.forward_subnet(self.forward_frontend(xs_pad, ilens))
        return xs, olens, None

    def forward_frontend(self, xs_pad: torch.Tensor, ilens: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Subsampling: (B, L, F), (B,) -> (B, T', D) and the (B, 1, T') mask; what every
        subnet of a supernet shares."""
        masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
        if can_chunk(self.embed):
            return chunked_subsampling(self.embed, xs_pad, masks)
        return self.embed(xs_pad, masks)

    def forward_subnet(self, front: Tuple[torch.Tensor, torch.Tensor]
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Blocks and final norm on a front-end output -> (B, T', D), lengths (B,)."""
        xs, masks = front
        xs = self.forward_blocks(xs, masks)
        if self.after_norm is not None:
            xs = self.after_norm(xs)
        return xs, masks.squeeze(1).sum(1)

    def forward_blocks(self, xs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The blocks on the subsampled (B, T', D) input with its (B, 1, T') mask."""
        for layer in self.encoders:
            xs, masks = layer(xs, masks)
        return xs

    def active_layers(self) -> Sequence[torch.nn.Module]:
        """The blocks the encoder runs through (all of them)."""
        return self.encoders

    def active_widths(self):
        """(FFN gate, SSM channels per head) of ``stream_block``: every unit here."""
        return 1, None

    @staticmethod
    def stream_block(layer: torch.nn.Module, xs: torch.Tensor, ssm: Optional[torch.Tensor],
                     conv: Optional[torch.Tensor], ffn_gate=1, ssm_width: Optional[int] = None
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pre-norm block on a chunk (B, L, D) with its SSM state and conv cache ->
        output, new state, new cache; ``ffn_gate`` / ``ssm_width`` narrow the FFNs and the
        MH-SSM heads (``elastic_feed_forward``, ``MultiHeadSSM.forward_chunk``)."""
        xs = xs + layer.ff_scale * elastic_feed_forward(
            layer.feed_forward_macaron, layer.norm_ff_macaron(xs), ffn_gate)
        h, ssm = layer.self_attn.mhssm.forward_chunk(layer.norm_mha(xs), ssm, ssm_width)
        xs = xs + h
        h, conv = layer.conv_module.forward_chunk(layer.norm_conv(xs), conv)
        xs = xs + h
        xs = layer.norm_final(xs + layer.ff_scale * elastic_feed_forward(
            layer.feed_forward, layer.norm_ff(xs), ffn_gate))
        return xs, ssm, conv

    @torch.no_grad()
    def forward_streaming(self, chunk: torch.Tensor, state: Optional[StreamingState] = None
                          ) -> Tuple[torch.Tensor, StreamingState]:
        """Encode a stream chunk by chunk (eval mode, every utterance of the batch in step).

        The concatenated outputs equal :meth:`forward` on the whole input (no padding):
        the subsampling keeps the frames it cannot use yet, each block carries its SSM
        state and its conv module's last ``kernel - 1`` frames.

        Args:
            chunk: the next feature frames (B, L, input_size), any L >= 0.
            state: what the previous call returned; None at the start.

        Returns:
            the new encoder frames (B, T_c, D) (T_c may be 0), the state after them.
        """
        if self.training:
            raise RuntimeError("forward_streaming needs eval mode (call encoder.eval())")
        if not self.normalize_before or not all(
                isinstance(layer.conv_module, CausalConvolutionModule) for layer in self.encoders):
            raise ValueError("streaming needs normalize_before: true and causal_conv: true")
        if state is None:
            blocks = len(self.encoders)
            state = StreamingState(chunk[:, :0], [None] * blocks, [None] * blocks)
        feats = torch.cat([state.features, chunk], dim=1)
        field, stride = receptive_field(self.embed)
        if feats.size(1) < field:
            return feats.new_zeros(feats.size(0), 0, self._output_size), state._replace(
                features=feats)
        xs, _ = chunked_subsampling(self.embed, feats, None)
        ssm, conv = list(state.ssm), list(state.conv)
        gate, width = self.active_widths()
        for i, layer in enumerate(self.active_layers()):
            xs, ssm[i], conv[i] = self.stream_block(layer, xs, ssm[i], conv[i], gate, width)
        xs = self.after_norm(xs)
        return xs, StreamingState(feats[:, xs.size(1) * stride:], ssm, conv)
