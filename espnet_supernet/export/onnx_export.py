"""ONNX export of an ESPnet ASR model's encoder and CTC head.

The graph is ``normalize`` (GlobalMVN, or none) -> encoder -> ``ctc.log_softmax``; the
frontend (STFT, log-mel) stays outside it. Inputs: ``feats`` float32 (B, L, F), the
frontend's output, and ``feats_lengths`` int64 (B,). Outputs: ``log_probs`` (B, T', V)
and ``out_lengths`` int64 (B,). Batch, L and T' are dynamic.

ESPnet's encoder cannot be traced as is for inputs of any length: its positional
encodings keep a table sized at the traced length and its padding masks come from Python
ints. :class:`OnnxEncoderCtc` therefore computes, from tensors, the padding masks, the
subsampled lengths and the sinusoidal positional encodings, and runs ESPnet's own modules
(subsampling convolutions, blocks, final LayerNorm, CTC projection) for everything else.

The exported graph is batch-invariant: each item's valid frames are those it gets when
run alone. ESPnet's batched forward is not: its convolution module mixes padded frames
into the last valid ones, and its subsampled mask keeps ``ceil(len / 4)`` frames where
the item alone has ``((len - 1) // 2 - 1) // 2``. The graph masks the depthwise
convolution's input and uses the latter lengths, i.e. ESPnet's single-utterance
inference result for every item.
"""

import copy
import math
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.layers.global_mvn import GlobalMVN
from espnet.nets.pytorch_backend.transformer.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
)
from espnet.nets.pytorch_backend.transformer.embedding import (
    PositionalEncoding,
    RelPositionalEncoding,
)
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)
from espnet.nets.pytorch_backend.transformer.subsampling import Conv2dSubsampling

from espnet_supernet.nets.conformer_blocks import gated_block_forward
from espnet_supernet.nets.pruned_conformer_encoder import PrunedConformerEncoder

INPUT_NAMES = ("feats", "feats_lengths")
OUTPUT_NAMES = ("log_probs", "out_lengths")
SUPPORTED = (
    "encoder: espnet2 ConformerEncoder or PrunedConformerEncoder; input_layer: conv2d "
    "(Conv2dSubsampling); positional encoding: rel_pos (rel_pos_type latest) with "
    "rel_selfattn, or abs_pos with selfattn; positionwise_layer_type: linear; "
    "normalize: GlobalMVN or none; no preencoder/postencoder"
)


class _FrameMask:
    """Holder of the current (B, 1, T') non-padding mask, shared with the convolutions."""

    valid: Optional[torch.Tensor] = None


class _MaskedDepthwiseConv(torch.nn.Module):
    """A Conformer depthwise convolution whose padded input frames are zeroed first, so
    that padding does not leak into valid frames (as zero padding of a lone item)."""

    def __init__(self, conv: torch.nn.Conv1d, mask: _FrameMask):
        super().__init__()
        self.conv = conv
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T') -> (B, C, T')."""
        return self.conv(x.masked_fill(~self.mask.valid, 0.0))


def _check_supported(model: ESPnetASRModel) -> str:
    """Raise ValueError unless the model can be exported; returns ``"rel"`` or ``"abs"``."""
    encoder = model.encoder
    if type(encoder) is not ConformerEncoder and not isinstance(
        encoder, PrunedConformerEncoder
    ):
        raise ValueError(f"ONNX export supports {SUPPORTED}; got encoder "
                         f"{type(encoder).__name__}")
    if getattr(model, "preencoder", None) is not None or getattr(
        model, "postencoder", None
    ) is not None:
        raise ValueError(f"ONNX export supports {SUPPORTED}; the model has a "
                         f"preencoder or postencoder")
    if model.normalize is not None and not isinstance(model.normalize, GlobalMVN):
        raise ValueError(f"ONNX export supports {SUPPORTED}; got normalize "
                         f"{type(model.normalize).__name__}")
    if getattr(encoder, "interctc_use_conditioning", False) or getattr(
        encoder, "ctc_trim", False
    ):
        raise ValueError(f"ONNX export supports {SUPPORTED}; got interctc conditioning "
                         f"or ctc_trim")
    if type(encoder.embed) is not Conv2dSubsampling:
        raise ValueError(f"ONNX export supports {SUPPORTED}; got input_layer "
                         f"{type(encoder.embed).__name__}")
    pos_enc = encoder.embed.out[1]
    if type(pos_enc) is RelPositionalEncoding:
        kind, attention_class = "rel", RelPositionMultiHeadedAttention
    elif type(pos_enc) is PositionalEncoding and not pos_enc.reverse:
        kind, attention_class = "abs", MultiHeadedAttention
    else:
        raise ValueError(f"ONNX export supports {SUPPORTED}; got positional encoding "
                         f"{type(pos_enc).__name__}")
    for i, layer in enumerate(encoder.encoders):
        att = getattr(layer, "self_attn", None)  # a pruned block may lack modules
        if att is not None and type(att) is not attention_class:
            raise ValueError(f"ONNX export supports {SUPPORTED}; block {i} has attention "
                             f"{type(att).__name__} with {type(pos_enc).__name__}")
        for ff in (getattr(layer, "feed_forward", None),
                   getattr(layer, "feed_forward_macaron", None)):
            if ff is not None and type(ff) is not PositionwiseFeedForward:
                raise ValueError(f"ONNX export supports {SUPPORTED}; block {i} has "
                                 f"feed-forward {type(ff).__name__}")
    return kind


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Output lengths (B,) of Conv2dSubsampling (two kernel-3 stride-2 convolutions) for
    input lengths (B,), as for each item alone: ``((len - 1) // 2 - 1) // 2`` (>= 0)."""
    first = torch.div((lengths - 1).clamp(min=0), 2, rounding_mode="floor")
    return torch.div((first - 1).clamp(min=0), 2, rounding_mode="floor")


class OnnxEncoderCtc(torch.nn.Module):
    """Traceable normalize -> Conformer encoder -> CTC log-softmax (a copy of the model's
    modules, eval mode, float32 on CPU).

    Args:
        model: an ESPnet ASR model accepted by :func:`export_onnx`.
    """

    def __init__(self, model: ESPnetASRModel):
        super().__init__()
        self.pos_kind = _check_supported(model)
        self.encoder = copy.deepcopy(model.encoder).cpu().float().eval()
        self.ctc = copy.deepcopy(model.ctc).cpu().float().eval()
        self.pruned = isinstance(self.encoder, PrunedConformerEncoder)
        norm = model.normalize
        self.has_norm = norm is not None
        self.norm_means = norm is not None and norm.norm_means
        self.norm_vars = norm is not None and norm.norm_vars
        if norm is not None:
            self.register_buffer("mean", norm.mean.detach().cpu().float().clone())
            self.register_buffer("std", norm.std.detach().cpu().float().clone())
        pos_enc = self.encoder.embed.out[1]
        d_model = pos_enc.d_model
        self.xscale = pos_enc.xscale
        self.register_buffer("div_term", torch.exp(  # as ESPnet's extend_pe
            torch.arange(0, d_model, 2, dtype=torch.float32)
            * -(math.log(10000.0) / d_model)))
        self.frame_mask = _FrameMask()
        for layer in self.encoder.encoders:
            att = getattr(layer, "self_attn", None)
            if att is not None and getattr(att, "use_flash_attn", False):
                att.use_flash_attn = False  # CUDA only, not traceable
            conv = getattr(layer, "conv_module", None)
            if conv is not None:
                conv.depthwise_conv = _MaskedDepthwiseConv(conv.depthwise_conv,
                                                           self.frame_mask)
        self.eval()

    def sinusoids(self, positions: torch.Tensor) -> torch.Tensor:
        """Interleaved sin/cos encodings (1, N, D) of float32 positions (N,)."""
        angles = positions[:, None] * self.div_term[None, :]
        return torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).flatten(1)[None]

    def forward(self, feats: torch.Tensor,
                feats_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, L, F) float32 log-mel and (B,) int64 lengths -> (B, T', V) CTC
        log-probabilities and (B,) int64 output lengths."""
        x = feats
        if self.norm_means:
            x = x - self.mean
        if self.has_norm:  # GlobalMVN zeroes padded frames
            frames = torch.arange(x.size(1), device=x.device)
            x = x.masked_fill((frames[None, :] >= feats_lengths[:, None])[..., None], 0.0)
        if self.norm_vars:
            x = x / self.std
        embed = self.encoder.embed
        x = embed.conv(x.unsqueeze(1))  # (B, C, T', F')
        x = embed.out[0](x.transpose(1, 2).flatten(2)) * self.xscale  # (B, T', D)
        steps = torch.arange(x.size(1), device=x.device)
        if self.pos_kind == "rel":  # relative positions T'-1 ... -(T'-1)
            offsets = torch.arange(2 * x.size(1) - 1, device=x.device)
            pos_emb = self.sinusoids((x.size(1) - 1 - offsets).to(x.dtype))
        else:
            x = x + self.sinusoids(steps.to(x.dtype))
            pos_emb = None
        out_lengths = subsampled_lengths(feats_lengths)
        masks = (steps[None, :] < out_lengths[:, None]).unsqueeze(1)  # (B, 1, T')
        self.frame_mask.valid = masks
        for layer in self.encoder.encoders:
            if self.pruned:
                kinds = self.encoder.kinds
                x = gated_block_forward(layer, x, pos_emb, masks, (1,) * len(kinds),
                                        self.encoder.normalize_before, kinds=kinds)
            else:
                out, _ = layer((x, pos_emb) if pos_emb is not None else x, masks)
                x = out[0] if isinstance(out, tuple) else out
        self.frame_mask.valid = None
        if self.encoder.normalize_before:
            x = self.encoder.after_norm(x)
        return self.ctc.log_softmax(x), out_lengths


def _feat_dim(model: ESPnetASRModel) -> Optional[int]:
    """The feature dimension F the encoder reads, or None when it is not known."""
    if model.frontend is not None and hasattr(model.frontend, "output_size"):
        return int(model.frontend.output_size())
    if model.normalize is not None:
        return int(model.normalize.mean.numel())
    return None


def export_onnx(model: ESPnetASRModel, path: Path, opset: int = 17) -> Path:
    """Write normalize -> encoder -> CTC log-softmax of ``model`` to ``path`` as ONNX.

    Inputs ``feats`` float32 (B, L, F), ``feats_lengths`` int64 (B,); outputs
    ``log_probs`` float32 (B, T', V), ``out_lengths`` int64 (B,); B, L and T' are dynamic.
    The model itself is not modified. When F is unknown (no frontend nor normalize) the
    feature axis is dynamic too.

    Raises:
        ValueError: unsupported encoder, input layer, positional encoding or normalize.
    """
    wrapper = OnnxEncoderCtc(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    feat_dim = _feat_dim(model)
    dynamic_axes = {"feats": {0: "batch", 1: "frames"}, "feats_lengths": {0: "batch"},
                    "log_probs": {0: "batch", 1: "out_frames"},
                    "out_lengths": {0: "batch"}}
    if feat_dim is None:  # smallest F that the subsampling's Linear accepts
        sub_freq = wrapper.encoder.embed.out[0].in_features // wrapper.encoder.output_size()
        feat_dim = 4 * sub_freq + 3
        dynamic_axes["feats"][2] = "feat_dim"
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 200, feat_dim, generator=generator)  # 2 s of 10 ms frames
    lengths = torch.tensor([200, 150], dtype=torch.int64)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript",
                                DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module=r"torch\.onnx")
        torch.onnx.export(
            wrapper, (feats, lengths), str(path), input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
            opset_version=opset, do_constant_folding=True, dynamo=False,
        )
    return path


def _reference(model: ESPnetASRModel, feats: torch.Tensor,
               length: int) -> Tuple[torch.Tensor, int]:
    """PyTorch normalize -> encoder -> CTC log-softmax of one item (1, L, F) alone."""
    x, lengths = feats[:, :length].clone(), torch.tensor([length])
    if model.normalize is not None:
        x, lengths = model.normalize(x, lengths)
    hs, hs_lengths, _ = model.encoder(x, lengths)
    if isinstance(hs, tuple):  # intermediate CTC outputs
        hs = hs[0]
    return model.ctc.log_softmax(hs)[0], int(hs_lengths[0])


def onnx_parity(model: ESPnetASRModel, path: Path, feats: torch.Tensor,
                feats_lengths: torch.Tensor) -> float:
    """Max |ONNX - PyTorch| of the CTC log-probabilities over valid output frames.

    ONNX Runtime (CPU) runs the batch (B, L, F) with lengths (B,); the PyTorch reference
    (eval, no grad) is normalize -> ``model.encoder`` -> ``ctc.log_softmax`` of each item
    alone, unpadded (for one unpadded item that is exactly
    ``model.encoder(feats, feats_lengths)``; for a padded batch, ESPnet's batched forward
    lets padding leak into the last valid frames, see the module docstring).

    Raises:
        ValueError: ONNX and PyTorch output lengths differ.
        TooShortUttError: an item has fewer than 7 frames (ESPnet's encoder rejects it;
            the ONNX graph gives it ``out_lengths`` 0).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feats = feats.detach().cpu().float()
    lengths = feats_lengths.detach().cpu().long()
    log_probs, out_lengths = session.run(
        list(OUTPUT_NAMES), {"feats": feats.numpy(), "feats_lengths": lengths.numpy()})
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    diffs: List[float] = []
    try:
        with torch.no_grad():
            for b, length in enumerate(lengths.tolist()):
                ref, ref_length = _reference(model, feats[b:b + 1].to(device), length)
                if int(out_lengths[b]) != ref_length:
                    raise ValueError(
                        f"ONNX out_lengths[{b}] = {int(out_lengths[b])} but PyTorch gives "
                        f"{ref_length} for an input of {length} frames"
                    )
                onnx_valid = log_probs[b, :ref_length]
                ref_valid = ref[:ref_length].float().cpu().numpy()
                diffs.append(float(np.abs(onnx_valid - ref_valid).max(initial=0.0)))
    finally:
        model.train(was_training)
    return max(diffs, default=0.0)
