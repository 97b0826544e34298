"""ESPnet's convolutional subsampling in time chunks, channels-last: same weights, same
result, less memory traffic and a matmul for the first convolution.

ESPnet's ``Conv2dSubsampling`` (and its 2x, 6x, 8x variants) first expands every input
frame to ``odim`` channels: for 4 x 6 s of 80-d features at 256 channels that is a 48 MB
activation, written, passed through a ReLU into a second 48 MB tensor and read back by
the second convolution. Tensors that large are fresh ``mmap`` allocations on every call
(page faults) and never stay in cache, so the front end runs far below the speed of the
encoder blocks per FLOP (0.44-0.48 of a 12 x 256 Conformer's time at 0.37 of its FLOPs).

Three changes, each measured on this 2-core machine (4 x 6 s, 2 threads, inference):

1. The convolutions only look at a few frames (7 for the 4x subsampling), so the front
   end runs on overlapping input chunks whose first-convolution activation fits
   ``CHUNK_BYTES``, giving exactly the same output frames.
2. The one-channel first convolution is a matmul of input patches (see
   :func:`channels_last_convolutions`): 2 ms instead of 18 ms at demo width.
3. Every activation is channels-last, the layout oneDNN's convolutions run fastest on,
   and the output linear reads it as it lies (:func:`frequency_major_linear`).

Front end, 4 x 6 s: demo (40-d, 144 channels) 34 ms stock, 23 ms with 1. alone, 17 ms
with all three; 12 x 256 (80-d) 176 / 108 ms; 12 x 512 552 / 410 ms. Tracing and ONNX
export use the stock module (a chunk loop would be unrolled for one length).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv2dSubsampling,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
)

from espnet_supernet.nets.inference_cache import inference_cached

CHUNKABLE = (Conv2dSubsampling, Conv2dSubsampling2, Conv2dSubsampling6, Conv2dSubsampling8)

#: Size of one chunk's first-convolution output. With the matmul first convolution,
#: larger chunks were faster up to 16 MB at 144 (the whole 13 MB demo batch: 17 ms, 20 ms
#: at 4 MB) and 512 channels (410 ms, 500 ms at 4 MB), and within 3% of the best (4 MB)
#: at 256 channels.
CHUNK_BYTES = 16 << 20


def receptive_field(embed: torch.nn.Module) -> Tuple[int, int]:
    """(frames seen by one output frame, input frames per output frame) of ``embed.conv``."""
    field, stride = 1, 1
    for layer in embed.conv:
        if isinstance(layer, torch.nn.Conv2d):
            field += (layer.kernel_size[0] - 1) * stride
            stride *= layer.stride[0]
    return field, stride


def can_chunk(embed: torch.nn.Module) -> bool:
    """Whether ``embed`` is a subsampling this module runs in chunks (not while tracing)."""
    return (type(embed) in CHUNKABLE and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and not torch.onnx.is_in_onnx_export())


def chunked_subsampling(
    embed: torch.nn.Module,
    xs: torch.Tensor,
    masks: Optional[torch.Tensor],
    chunk_bytes: Optional[int] = None,
):
    """``embed(xs, masks)`` computed over time chunks of the output.

    Args:
        embed: one of ESPnet's ``Conv2dSubsampling{,2,6,8}``.
        xs: features (B, L, idim).
        masks: non-padding mask (B, 1, L) or None.
        chunk_bytes: target size of one chunk's first-convolution output (default:
            ``CHUNK_BYTES`` on the CPU; elsewhere one chunk: the cache and page-fault
            savings are the CPU's, a GPU would only pay more kernel launches).

    Returns:
        Same as ``embed(xs, masks)``: (features (B, T', odim) or (features, pos_emb)), mask
        (B, 1, T') or None.
    """
    field, stride = receptive_field(embed)
    first = embed.conv[0]
    steps_first = stride // first.stride[0]  # first-conv rows per output frame
    width = (xs.size(2) - first.kernel_size[1]) // first.stride[1] + 1
    row_bytes = xs.size(0) * first.weight.shape[0] * width * xs.element_size()
    linear = embed.out[0] if isinstance(embed.out, torch.nn.Sequential) else embed.out
    n_out = (xs.size(1) - field) // stride + 1
    if chunk_bytes is None and xs.device.type != "cpu":
        chunk = max(1, n_out)
    else:
        chunk = max(2, (chunk_bytes or CHUNK_BYTES) // (row_bytes * steps_first))
    pieces = []
    for start in range(0, n_out, chunk):
        n = min(chunk, n_out - start)
        h = channels_last_convolutions(
            embed.conv, xs[:, start * stride:(start + n - 1) * stride + field])
        pieces.append(frequency_major_linear(linear, h))
    x = torch.cat(pieces, dim=1)
    x = embed.out[1](x) if isinstance(embed.out, torch.nn.Sequential) else embed.pos_enc(x)
    if masks is not None:
        masks = masks[:, :, ::stride][:, :, :n_out]
    return x, masks


def channels_last_convolutions(conv: torch.nn.Sequential, xs: torch.Tensor) -> torch.Tensor:
    """``conv(xs.unsqueeze(1))`` with every activation channels-last in memory.

    The first convolution has one input channel: ``kt x kf`` taps per output, too few for
    oneDNN's kernels, which ran it at ~1 GMAC/s here (18 ms of the demo front end's 30
    for 29 M multiply-adds). Here it is one matmul of the (B, T1, F1, kt * kf) input
    patches with the (kt * kf, C) filters, whose (B, T1, F1, C) result already is the
    channels-last layout the next convolution runs fastest on (~20% faster than
    on (B, C, T1, F1)). ReLUs run in place (an out-of-place one cost the demo front end
    ~2 ms per call in fresh pages); neither the matmul's nor a convolution's backward
    needs its output.

    Args:
        conv: ESPnet's subsampling ``conv`` (Conv2d(1, C, ...), activations, Conv2d(C, C,
            ...), ...).
        xs: features (B, L, F).

    Returns:
        (B, C, T', F') as a channels-last view of (B, T', F', C) memory.
    """
    first, rest = conv[0], conv[1:]
    kt, kf = first.kernel_size
    if first.weight.shape[1] != 1 or first.padding != (0, 0) or first.dilation != (1, 1) \
            or first.groups != 1:
        return conv(xs.unsqueeze(1))
    patches = xs.unfold(1, kt, first.stride[0]).unfold(2, kf, first.stride[1])
    b, t, f = patches.shape[:3]  # (B, T1, F1, kt, kf)
    weight = first.weight.reshape(-1, kt * kf).t()  # (out channels: sliced or not)
    rows = patches.reshape(b * t * f, kt * kf)
    h = rows @ weight if first.bias is None else torch.addmm(first.bias, rows, weight)
    h = h.view(b, t, f, -1).permute(0, 3, 1, 2)
    for layer in rest:  # ReLUs in place: no fresh activation-sized tensor (page faults)
        h = torch.relu_(h) if type(layer) is torch.nn.ReLU else layer(h)
    return h


def frequency_major_linear(linear: torch.nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """ESPnet's ``linear(h.transpose(1, 2).reshape(B, T, C * F))`` on channels-last ``h``.

    The input is read as the (B, T, F * C) view it is in memory, with the linear's
    columns reordered from (C, F) to (F, C) instead (kept while no gradient is needed).

    Args:
        linear: ``Linear(C * F, odim)`` (another module, e.g. a quantized one, is called
            on ESPnet's layout).
        h: (B, C, T, F), channels-last.

    Returns:
        (B, T, odim).
    """
    b, c, t, f = h.shape
    if type(linear) is not torch.nn.Linear or not h.permute(0, 2, 3, 1).is_contiguous():
        # e.g. a dynamically quantized int8 Linear: its own forward on ESPnet's layout
        return linear(h.transpose(1, 2).reshape(b, t, c * f))
    weight = inference_cached(linear, f"frequency_major_weight_{c}", (linear.weight,), lambda: (
        linear.weight.reshape(-1, c, f).transpose(1, 2).reshape(-1, f * c)))
    return F.linear(h.permute(0, 2, 3, 1).reshape(b, t, f * c), weight, linear.bias)
