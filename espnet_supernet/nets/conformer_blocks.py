"""Running Conformer blocks with gated modules: the forward shared by the supernet
encoder and the pruned encoders exported from it.

A block is ESPnet's ``EncoderLayer`` (macaron FFN, MHSA, conv, FFN, final LayerNorm, or
the subset its config has); each module has a gate (see :mod:`espnet_supernet.nets.unit_gates`). A module whose gate is
a hard zero (or that an exported encoder no longer has) is never called.
"""

from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.conformer.convolution import ConvolutionModule
from espnet.nets.pytorch_backend.conformer.swish import Swish
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.subsampling import (
    TooShortUttError,
    check_short_utt,
)

from espnet_supernet.nets.chunked_subsampling import can_chunk, chunked_subsampling
from espnet_supernet.nets.elastic_attention import elastic_self_attention
from espnet_supernet.nets.elastic_feed_forward import elastic_feed_forward
from espnet_supernet.nets.elastic_subsampling import sliced_subsampling
from espnet_supernet.nets.inference_cache import inference_cached
from espnet_supernet.nets.subnet_space import MODULE_ATTRS, MODULE_TYPES
from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d
from espnet_supernet.nets.vgg_subsampling import VGG4Subsampling
from espnet_supernet.nets.unit_gates import Gate, UnitSlice, is_skipped


class FrontendOutput(NamedTuple):
    """Output of the front end, shared by every subnet of a step that runs it at the same
    width.

    Attributes:
        xs: subsampled features with positional encoding, (B, T', D).
        pos_emb: relative positional embedding (1, 2T'-1 or T', D), or None.
        masks: non-padding mask (B, 1, T').
        channels: the front end's channels it was computed with (None: all).
        inputs: the features and lengths it was computed from, and the outputs at other
            widths computed so far (``{channels: FrontendOutput}``), for an elastic front
            end (:meth:`SupernetConformerEncoder.frontend_at`); else None.
    """

    xs: torch.Tensor
    pos_emb: Optional[torch.Tensor]
    masks: torch.Tensor
    channels: Optional[int] = None
    inputs: Optional[Tuple[torch.Tensor, torch.Tensor, dict]] = None


def frontend_forward(encoder: torch.nn.Module, xs_pad: torch.Tensor,
                     ilens: torch.Tensor, channels: Optional[int] = None) -> FrontendOutput:
    """Subsampling and positional encoding (``encoder.embed``) of a Conformer encoder.

    Args:
        encoder: an ESPnet ``ConformerEncoder`` (or subclass).
        xs_pad: features (B, L, input_size).
        ilens: lengths (B,).
        channels: run the convolutional front end at its first ``channels`` channels
            (:mod:`espnet_supernet.nets.elastic_subsampling`); None: all.

    Raises:
        TooShortUttError: input too short for the subsampling (as stock ESPnet).
    """
    masks = (~make_pad_mask(ilens)[:, None, :]).to(xs_pad.device)
    if isinstance(encoder.embed, VGG4Subsampling):
        short, limit = VGG4Subsampling.output_length(xs_pad.size(1)) < 1, 3
    else:
        short, limit = check_short_utt(encoder.embed, xs_pad.size(1))
    if short:
        raise TooShortUttError(
            f"has {xs_pad.size(1)} frames and is too short for subsampling "
            f"(it needs more than {limit} frames), return empty results",
            xs_pad.size(1),
            limit,
        )
    if channels is not None:
        out, masks = sliced_subsampling(encoder.embed, xs_pad, masks, channels)
    elif isinstance(encoder.embed, torch.nn.Sequential):
        out = encoder.embed(xs_pad)
    elif can_chunk(encoder.embed):
        out, masks = chunked_subsampling(encoder.embed, xs_pad, masks)
    else:
        out, masks = encoder.embed(xs_pad, masks)
    xs, pos_emb = out if isinstance(out, tuple) else (out, None)
    return FrontendOutput(xs, pos_emb, masks, channels)


class StandardStridesGrad(torch.autograd.Function):
    """Identity whose backward hands on its gradient with row-major strides.

    The channels-last depthwise convolution returns its weight's (C, 1, K) gradient with
    strides (K, 1, 1); DDP's gradient buckets hold the parameter's (K, K, 1) and warn on
    every run that the layouts differ (same bytes, the middle dimension has size 1).
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clone(memory_format=torch.contiguous_format)


def convolution_forward(conv: ConvolutionModule, x: torch.Tensor) -> torch.Tensor:
    """ESPnet's ``ConvolutionModule`` on (B, T, C), laid out for the CPU.

    Same weights and result as ``conv(x)``, computed time-major: the two kernel-1
    convolutions as ``F.linear`` on (B, T, C), and the depthwise convolution as a
    channels-last ``conv2d`` over (B, C, 1, T), which oneDNN runs about 5x faster than
    ``conv1d`` on (B, C, T) (0.11 vs 0.53 ms for 4 x 150 frames x 144 channels, kernel 15,
    2 threads). Without these the module costs far more than its FLOPs. In eval mode the
    BatchNorm is folded into the depthwise convolution's weights and ESPnet's Swish
    (``x * sigmoid(x)``) runs as the fused ``F.silu``: two passes less over (B, C, T).
    """
    h = F.linear(x, conv.pointwise_conv1.weight.squeeze(-1), conv.pointwise_conv1.bias)
    h = F.glu(h, dim=-1).transpose(1, 2)  # (B, C, T), channels last in memory
    dw, norm = conv.depthwise_conv, conv.norm
    if type(dw) is torch.nn.Conv1d:
        stats = _inference_statistics(norm)
        if stats is not None:  # eval: the BatchNorm folded into the depthwise weights
            weight, bias = _folded_depthwise(dw, norm, stats)
            norm = None
        else:
            weight, bias = dw.weight, dw.bias
            if weight.requires_grad and torch.is_grad_enabled():
                weight = StandardStridesGrad.apply(weight)
            weight = weight.unsqueeze(2)
        h = F.conv2d(h.unsqueeze(2).contiguous(memory_format=torch.channels_last),
                     weight, bias, padding=(0, dw.padding[0]), groups=dw.groups).squeeze(2)
    else:  # a wrapped convolution (e.g. the ONNX export's padding mask): as a module
        h = dw(h)
    if norm is not None:
        h = norm(h)
    h = F.silu(h) if type(conv.activation) is Swish else conv.activation(h)  # (B, C, T)
    return F.linear(h.transpose(1, 2), conv.pointwise_conv2.weight.squeeze(-1),
                    conv.pointwise_conv2.bias)


def _folded_depthwise(dw: torch.nn.Conv1d, norm: torch.nn.BatchNorm1d,
                      stats: Tuple[torch.Tensor, torch.Tensor]
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Depthwise weight (C, 1, 1, K) and bias (C,) with the eval BatchNorm (``stats`` =
    mean, var) folded in. Without gradients they are kept on ``dw`` until a source changes
    (its storage or version: an optimizer step, a BN re-estimation, another size's
    statistics slot), so inference does not refold them on every call."""
    sources = [dw.weight, norm.weight, norm.bias, stats[0], stats[1]]
    if dw.bias is not None:
        sources.append(dw.bias)

    def build() -> Tuple[torch.Tensor, torch.Tensor]:
        scale = norm.weight * torch.rsqrt(stats[1] + norm.eps)
        weight = (dw.weight * scale[:, None, None]).unsqueeze(2)
        bias = ((0.0 if dw.bias is None else dw.bias) - stats[0]) * scale + norm.bias
        return weight, bias

    return inference_cached(dw, "folded_bn", sources, build)


def _inference_statistics(norm: torch.nn.Module
                          ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """(mean, var) an affine BatchNorm in eval mode normalises with (the active size's
    slot for a switchable one), or None where it would use batch statistics."""
    if norm.training or not isinstance(norm, torch.nn.BatchNorm1d) or not norm.affine:
        return None
    if isinstance(norm, SwitchableBatchNorm1d):
        if norm.calibrating:
            return None
        if norm.active_slot is not None:
            return norm.slot_statistics(norm.active_slot)
    if norm.running_mean is None:
        return None
    return norm.running_mean, norm.running_var


def gated_block_forward(
    layer: torch.nn.Module,
    x: torch.Tensor,
    pos_emb: Optional[torch.Tensor],
    masks: torch.Tensor,
    gates: Sequence[Gate],
    normalize_before: bool = True,
    adaptive_ffn_dropout: bool = True,
    kinds: Sequence[str] = MODULE_TYPES,
) -> torch.Tensor:
    """One Conformer block (ESPnet ``EncoderLayer`` weights) with gated modules.

    Module j computes ``x <- x + c * z_j * f_j(x)`` (c = ``ff_scale`` for the FFNs, times
    ESPnet's stochastic-depth ``1 / (1 - p)`` in training). The block's final LayerNorm
    (which ESPnet's block has only with a conv module) stays whenever a module of the
    block runs; a block whose gates are all hard zeros is skipped entirely (identity, no
    compute), so a subnet of whole blocks is exactly a shallower stock Conformer. In
    training a block with ``stochastic_depth_rate`` p > 0 is skipped with probability p,
    drawn as ESPnet's ``EncoderLayer`` draws it.

    Args:
        layer: the block; a module it lacks (removed by an export) counts as skipped.
        x: (B, T, D).
        pos_emb: relative positional embedding, or None.
        masks: (B, 1, T) non-padding mask.
        gates: a gate per module of ``kinds``.
        normalize_before: pre-norm (ESPnet's default) or post-norm residuals.
        adaptive_ffn_dropout: FFN hidden dropout scaled by the kept chunk fraction.
        kinds: the block's modules in order (``subnet_space.block_kinds``).

    Returns:
        (B, T, D).
    """
    if all(is_skipped(g) for g in gates):
        return x
    depth_scale = 1.0
    rate = getattr(layer, "stochastic_depth_rate", 0.0)
    if layer.training and rate > 0:
        if torch.rand(1).item() < rate:
            return x
        depth_scale = 1.0 / (1 - rate)
    for kind, gate in zip(kinds, gates):
        module_name, norm_name = MODULE_ATTRS[kind]
        module = getattr(layer, module_name, None)
        if module is None or is_skipped(gate):
            continue
        norm = getattr(layer, norm_name)
        scale = depth_scale * (layer.ff_scale if kind in ("ffn", "ffn_macaron") else 1.0)
        h = norm(x) if normalize_before else x
        if kind == "mhsa":
            h = elastic_self_attention(module, h, pos_emb, masks, gate)
        elif kind == "conv":
            h = convolution_forward(module, h)
        else:
            h = elastic_feed_forward(module, h, gate, adaptive_ffn_dropout)
        if isinstance(gate, UnitSlice):
            scale = scale * gate.scale
        elif isinstance(gate, torch.Tensor):
            scale = scale * gate if gate.dim() in (0, 3) else scale  # 1-d: per unit
        elif gate != 1:
            scale = scale * gate
        if layer.training:
            h = layer.dropout(h)
        if isinstance(scale, torch.Tensor):  # a soft gate (selection step 1)
            x = x + scale * h
        else:  # x + scale * h in one pass
            x = torch.add(x, h, alpha=scale)
        if not normalize_before:
            x = norm(x)
    norm_final = getattr(layer, "norm_final", None)
    return x if norm_final is None else norm_final(x)


def interctc_feeds(block_gates: Sequence[Sequence[Gate]],
                   interctc_layer_idx: Sequence[int]) -> List[int]:
    """The intermediate CTC layers (1-based block numbers of the full encoder) that a
    subnet computes: layer i reads the hidden state after block i, which in a subnet is
    the output of its last kept block at or before i (skipped blocks are identities).
    A layer is used when the subnet keeps a block at or before it (else it would read the
    front end) and one after it (else it would read the final output)."""
    kept = [i for i, gates in enumerate(block_gates, 1)
            if not all(is_skipped(g) for g in gates)]
    return [i for i in interctc_layer_idx if kept and kept[0] <= i < kept[-1]]


def encoder_blocks_forward(
    encoder: torch.nn.Module,
    front: FrontendOutput,
    block_gates: Sequence[Sequence[Gate]],
    adaptive_ffn_dropout: bool = True,
    kinds: Sequence[str] = MODULE_TYPES,
    ctc: Optional[torch.nn.Module] = None,
) -> Tuple[torch.Tensor, torch.Tensor, List[Tuple[int, torch.Tensor]]]:
    """Every block of a Conformer encoder, then its final LayerNorm (pre-norm).

    ESPnet's ``layer_drop_rate`` (``encoder.encoders``, a ``MultiSequential``) skips each
    block with that probability in training, and the encoder's ``interctc_layer_idx``
    gives intermediate outputs (normalised by ``after_norm`` as stock ESPnet), on the
    layers :func:`interctc_feeds` says; with ``interctc_use_conditioning`` each adds
    ``conditioning_layer(ctc.softmax(out))`` to the hidden state (ESPnet's
    self-conditioned CTC).

    Args:
        encoder: the encoder (its ``encoders``, ``normalize_before``, ``after_norm``,
            ``interctc_layer_idx``, ``interctc_use_conditioning``, ``conditioning_layer``).
        front: output of :func:`frontend_forward`.
        block_gates: per block, the gates of :func:`gated_block_forward`.
        adaptive_ffn_dropout: as in :func:`gated_block_forward`.
        kinds: the blocks' modules (as in :func:`gated_block_forward`).
        ctc: the model's CTC (needed with ``interctc_use_conditioning``).

    Returns:
        output (B, T', D), its lengths (B,), and the intermediate outputs
        ``[(layer, (B, T', D))]`` (empty without ``interctc_layer_idx``).
    """
    xs = front.xs
    layers = getattr(encoder, "interctc_layer_idx", None) or []
    feeds = set(interctc_feeds(block_gates, layers)) if layers else set()
    conditioning = bool(feeds) and getattr(encoder, "interctc_use_conditioning", False)
    if conditioning and ctc is None:
        raise ValueError("interctc_use_conditioning needs the model's CTC: call the "
                         "encoder with ctc=model.ctc (as ESPnetASRModel.encode does)")
    drop_rate = getattr(encoder.encoders, "layer_drop_rate", 0.0)
    drop = (torch.empty(len(encoder.encoders)).uniform_() < drop_rate
            if encoder.training and drop_rate > 0 else None)
    intermediate = []
    for i, (layer, gates) in enumerate(zip(encoder.encoders, block_gates)):
        if drop is None or not bool(drop[i]):
            xs = gated_block_forward(layer, xs, front.pos_emb, front.masks, gates,
                                     encoder.normalize_before, adaptive_ffn_dropout, kinds)
        if i + 1 in feeds:
            out = encoder.after_norm(xs) if encoder.normalize_before else xs
            intermediate.append((i + 1, out))
            if conditioning:
                xs = xs + encoder.conditioning_layer(ctc.softmax(out))
    if encoder.normalize_before:
        xs = encoder.after_norm(xs)
    return xs, front.masks.squeeze(1).sum(1), intermediate
