"""The chunked convolutional subsampling equals ESPnet's module, forward and backward."""

import pytest
import torch
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv2dSubsampling,
    Conv2dSubsampling2,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
)

from espnet_supernet.nets.chunked_subsampling import (
    can_chunk,
    chunked_subsampling,
    receptive_field,
)


@pytest.mark.parametrize("cls,field,stride", [
    (Conv2dSubsampling, 7, 4), (Conv2dSubsampling2, 7, 2),
    (Conv2dSubsampling6, 11, 6), (Conv2dSubsampling8, 15, 8),
])
@pytest.mark.parametrize("length", [15, 16, 101, 203])
def test_same_as_stock(cls, field, stride, length):
    torch.manual_seed(0)
    embed = cls(20, 16, 0.0, RelPositionalEncoding(16, 0.0)).eval()
    assert receptive_field(embed) == (field, stride)
    assert can_chunk(embed)
    xs = torch.randn(3, length, 20)
    masks = torch.ones(3, 1, length, dtype=torch.bool)
    masks[1, :, length // 2:] = False
    (ref, ref_pos), ref_mask = embed(xs, masks)
    # ~3 output frames per chunk: many chunks and a ragged last one
    (out, pos), mask = chunked_subsampling(embed, xs, masks, chunk_bytes=3 * 3 * 16 * 9 * 4)
    assert out.shape == ref.shape and mask.shape == ref_mask.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pos, ref_pos)
    assert torch.equal(mask, ref_mask)


def test_gradients_match_stock():
    torch.manual_seed(0)
    embed = Conv2dSubsampling(20, 16, 0.0, RelPositionalEncoding(16, 0.0))
    xs = torch.randn(2, 90, 20, requires_grad=True)
    grads = []
    for run in (lambda: embed(xs, None)[0][0],
                lambda: chunked_subsampling(embed, xs, None, chunk_bytes=1)[0][0]):
        embed.zero_grad()
        xs.grad = None
        run().pow(2).sum().backward()
        grads.append([xs.grad.clone()] + [p.grad.clone() for p in embed.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)


def test_inference_follows_weight_updates():
    """The reordered output-linear weights kept for inference follow in-place updates
    (``load_state_dict``, an optimizer step) and a move to new storage."""
    torch.manual_seed(0)
    embed = Conv2dSubsampling(20, 16, 0.0, RelPositionalEncoding(16, 0.0)).eval()
    xs = torch.randn(2, 60, 20)

    def check():
        with torch.inference_mode():
            out = chunked_subsampling(embed, xs, None)[0][0]
            torch.testing.assert_close(out, embed(xs, None)[0][0], atol=1e-5, rtol=1e-5)
        return out

    first = check()
    assert "frequency_major_weight_16" in embed.out[0]._inference_cache
    with torch.no_grad():
        embed.out[0].weight.mul_(2.0)
    assert not torch.allclose(check(), first, atol=1e-3)
    embed.load_state_dict({k: v * 0.5 for k, v in embed.state_dict().items()})
    check()
    embed.out[0].weight.data = embed.out[0].weight.data.clone() * 3.0
    check()


def test_quantized_output_linear():
    """An int8 export's dynamically quantized output Linear (``weight`` is a method there)
    runs as its own module on ESPnet's layout."""
    torch.manual_seed(0)
    embed = Conv2dSubsampling(20, 16, 0.0, RelPositionalEncoding(16, 0.0)).eval()
    embed = torch.ao.quantization.quantize_dynamic(embed, {torch.nn.Linear}, torch.qint8)
    assert type(embed.out[0]) is not torch.nn.Linear
    xs = torch.randn(2, 60, 20)
    with torch.inference_mode():
        out = chunked_subsampling(embed, xs, None)[0][0]
        torch.testing.assert_close(out, embed(xs, None)[0][0], atol=1e-5, rtol=1e-5)
