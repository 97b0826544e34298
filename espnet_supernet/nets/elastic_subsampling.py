"""An elastic convolutional front end: a subnet may keep only the first channels.

ESPnet's ``Conv2dSubsampling`` (and its 2x, 6x, 8x variants) runs C = ``output_size``
channels through its convolutions (the second one costs ``9 C^2`` multiply-adds per
output position) before a ``Linear(C * F', D)``: at 12 x 256 it is about 0.37 of the
encoder's FLOPs, a floor under every size of whole blocks. Here a subnet can run the
front end at ``c < C`` channels, the prefix of each convolution's filters (and of their
input channels) and the matching columns of the output linear, as once-for-all networks
(Cai et al. 2020) shrink a convolution's width; the output stays D-dimensional, so the
blocks are unchanged. With c = C it computes exactly what ESPnet does.

Training differentiates through the sliced views of the shared weights (inference keeps
contiguous copies per width, rebuilt when a weight changes); an exported
subnet gets a physically narrower stock module (:func:`narrow_subsampling`).
"""

from typing import Dict, Optional, Tuple

import torch

from espnet_supernet.nets.chunked_subsampling import CHUNKABLE, can_chunk, chunked_subsampling
from espnet_supernet.nets.inference_cache import inference_cached

#: ESPnet front ends whose channels can be narrowed, those the chunked path runs
#: (Conv2d(1, C), Conv2d(C, C), ..., then ``Linear(C * F', D)`` as ``out[0]`` or, for the
#: 8x one, ``out``).
ELASTIC_SUBSAMPLING = CHUNKABLE


def subsampling_channels(embed: torch.nn.Module) -> int:
    """C, the channels of ``embed``'s convolutions."""
    return embed.conv[0].weight.shape[0]


def output_linear(embed: torch.nn.Module) -> Tuple[str, torch.nn.Linear]:
    """(parameter prefix, module) of the output ``Linear(C * F', D)`` of ``embed``."""
    if isinstance(embed.out, torch.nn.Sequential):
        return "out.0", embed.out[0]
    return "out", embed.out


def check_elastic(embed: torch.nn.Module, channels: int) -> None:
    """Raise a clear error unless ``embed`` can run at ``channels`` channels."""
    if type(embed) not in ELASTIC_SUBSAMPLING:
        raise ValueError(
            f"subnet_frontend_channels needs ESPnet's input_layer conv2d, conv2d2, conv2d6 "
            f"or conv2d8, not {type(embed).__name__}: remove subnet_frontend_channels or "
            "change input_layer")
    full = subsampling_channels(embed)
    if not 1 <= channels <= full:
        raise ValueError(f"a front end of {full} channels can keep 1..{full}, got {channels}")


def sliced_parameters(embed: torch.nn.Module, channels: int) -> Dict[str, torch.Tensor]:
    """The weights ``embed`` computes with at ``channels`` channels, by parameter name
    (views of its parameters: gradients reach the shared weights).

    The first convolution keeps its first ``channels`` filters, every later one those
    filters of its first ``channels`` input channels, and the output linear the columns
    of those channels (its input is channel-major: column ``ch * F' + f``).
    """
    params: Dict[str, torch.Tensor] = {}
    convs = [i for i, m in enumerate(embed.conv) if isinstance(m, torch.nn.Conv2d)]
    for k, i in enumerate(convs):
        conv = embed.conv[i]
        weight = conv.weight[:channels]
        params[f"conv.{i}.weight"] = weight if k == 0 else weight[:, :channels]
        if conv.bias is not None:
            params[f"conv.{i}.bias"] = conv.bias[:channels]
    prefix, linear = output_linear(embed)
    per_channel = linear.weight.shape[1] // subsampling_channels(embed)
    params[f"{prefix}.weight"] = linear.weight[:, :channels * per_channel]
    return params


class _Subsampling(torch.nn.Module):
    """``frontend_forward``'s subsampling call as a module (for ``functional_call``)."""

    def __init__(self, embed: torch.nn.Module):
        super().__init__()
        self.embed = embed

    def forward(self, xs: torch.Tensor, masks: torch.Tensor):
        if can_chunk(self.embed):
            return chunked_subsampling(self.embed, xs, masks)
        return self.embed(xs, masks)


def sliced_subsampling(embed: torch.nn.Module, xs: torch.Tensor,
                       masks: Optional[torch.Tensor], channels: int):
    """``embed(xs, masks)`` at ``channels`` channels.

    Args:
        embed: one of :data:`ELASTIC_SUBSAMPLING`.
        xs: features (B, L, idim).
        masks: non-padding mask (B, 1, L).
        channels: channels kept (``subsampling_channels(embed)``: the stock result).

    Returns:
        As ``embed(xs, masks)``: ((B, T', D), pos_emb) or (B, T', D), and (B, 1, T').
    """
    wrapper = _Subsampling(embed)
    if channels == subsampling_channels(embed):
        return wrapper(xs, masks)
    params = inference_cached(embed, f"sliced_parameters_{channels}", list(embed.parameters()),
                              lambda: {f"embed.{k}": v.contiguous()
                                       for k, v in sliced_parameters(embed, channels).items()})
    return torch.func.functional_call(wrapper, params, (xs, masks), strict=False)


def narrow_subsampling(embed: torch.nn.Module, idim: int, channels: int) -> torch.nn.Module:
    """A stock ESPnet module of ``embed``'s type with ``channels`` channels and the same
    D-dimensional output and positional encoding (its weights to be loaded): what an
    exported subnet with a narrow front end runs (tracing and ONNX included)."""
    check_elastic(embed, channels)
    linear = output_linear(embed)[1]
    pos_enc = embed.out[1] if isinstance(embed.out, torch.nn.Sequential) else embed.pos_enc
    narrow = type(embed)(idim, channels, 0.0, pos_enc)
    out = torch.nn.Linear(output_linear(narrow)[1].in_features, linear.out_features,
                          bias=linear.bias is not None)
    if isinstance(narrow.out, torch.nn.Sequential):
        narrow.out[0] = out
    else:
        narrow.out = out
    return narrow
