"""Elastic front end: a subnet runs the conv2d subsampling at its first channels."""

import pytest
import torch
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet.nets.pytorch_backend.transformer.embedding import RelPositionalEncoding
from espnet.nets.pytorch_backend.transformer.subsampling import (
    Conv2dSubsampling,
    Conv2dSubsampling6,
    Conv2dSubsampling8,
)

from espnet_supernet.nets.chunked_subsampling import chunked_subsampling
from espnet_supernet.nets.elastic_subsampling import (
    narrow_subsampling,
    output_linear,
    sliced_parameters,
    sliced_subsampling,
)
from espnet_supernet.nets.subnet_cost import (
    flops_table,
    measured_flops_per_second,
    params_table,
)
from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
from tiny_models import TINY_ENCODER

IDIM, C = 20, 16


def _narrow_copy(embed, channels):
    """The stock narrow module with the sliced weights loaded."""
    narrow = narrow_subsampling(embed, IDIM, channels)
    state = {k: v.detach().clone() for k, v in sliced_parameters(embed, channels).items()}
    prefix, linear = output_linear(embed)
    state[f"{prefix}.bias"] = linear.bias.detach().clone()
    narrow.load_state_dict(state, strict=True)
    return narrow.eval()


@pytest.mark.parametrize("cls", [Conv2dSubsampling, Conv2dSubsampling6, Conv2dSubsampling8])
@pytest.mark.parametrize("channels", [16, 9, 4, 1])
def test_sliced_front_end_is_the_narrow_stock_module(cls, channels):
    torch.manual_seed(0)
    embed = cls(IDIM, C, 0.0, RelPositionalEncoding(C, 0.0)).eval()
    xs, lens = torch.randn(2, 90, IDIM), torch.tensor([90, 61])
    masks = ~make_pad_mask(lens)[:, None, :]
    with torch.no_grad():
        (out, pos), out_masks = sliced_subsampling(embed, xs, masks, channels)
        (ref, ref_pos), ref_masks = _narrow_copy(embed, channels)(xs, masks)
        # the chunked CPU path on the narrow module, with many chunks
        (chunked, _), _ = chunked_subsampling(_narrow_copy(embed, channels), xs, masks,
                                              chunk_bytes=1)
    assert out.shape == ref.shape == (2, ref_masks.size(2), C)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(chunked, ref, atol=1e-5)
    assert torch.equal(pos, ref_pos) and torch.equal(out_masks, ref_masks)
    if channels == C:  # all channels: exactly ESPnet's module
        (stock, _), _ = embed(xs, masks)
        assert torch.allclose(out, stock, atol=1e-5)
    narrow = narrow_subsampling(embed, IDIM, channels)
    assert narrow.conv[0].weight.shape[0] == channels and type(narrow) is cls
    assert output_linear(narrow)[1].weight.shape == (
        C, output_linear(embed)[1].in_features * channels // C)


def _encoder(**conf):
    torch.manual_seed(0)
    conf = dict(dict(TINY_ENCODER, subnet_sizes=[4, 12], subnet_frontend_channels={"4": 5}),
                **conf)
    return SupernetConformerEncoder(**conf)


def test_a_narrow_size_ignores_the_channels_it_drops_and_trains_only_its_own():
    enc = _encoder().eval()
    xs, lens = torch.randn(2, 120, enc.input_size), torch.tensor([120, 80])
    with torch.no_grad():
        enc.set_named_subnet("4")
        assert enc.active_frontend_channels == 5
        front = enc.forward_frontend(xs, lens)
        small, _ = enc.forward_subnet(front)
        enc.set_named_subnet("12")
        assert enc.active_frontend_channels is None
        big, _ = enc.forward_subnet(front)  # recomputed at all channels from front's inputs
        assert torch.allclose(big, enc.forward_subnet(enc.forward_frontend(xs, lens))[0])
        enc.embed.conv[2].weight[5:].normal_()  # channels size 4 does not keep
        enc.embed.out[0].weight[:, 5 * 4:].normal_()
        enc.set_named_subnet("4")
        assert torch.allclose(enc.forward_subnet(enc.forward_frontend(xs, lens))[0], small,
                              atol=1e-6)
        enc.set_named_subnet("12")
        assert not torch.allclose(enc.forward_subnet(enc.forward_frontend(xs, lens))[0], big,
                                  atol=1e-3)
    enc.train()
    enc.set_named_subnet("4")
    out, _ = enc.forward_subnet(enc.forward_frontend(xs, lens))
    out.sum().backward()
    grad = enc.embed.conv[2].weight.grad
    assert grad[:5, :5].abs().sum() > 0
    assert grad[5:].abs().sum() == 0 and grad[:, 5:].abs().sum() == 0
    # the same mask given as a mask (not by name) selects the same width
    enc.set_subnet(enc.subnet_mask("4"))
    assert enc.active_frontend_channels == 5
    enc.set_frontend_channels(16)  # all channels: the stock path
    assert enc.active_frontend_channels is None


@pytest.mark.parametrize("channels", [None, 13, 5, 1])
def test_cost_model_follows_the_front_end_width(channels):
    enc = _encoder().eval()
    flops, params = flops_table(enc, 2.0), params_table(enc)
    mask = enc.subnet_mask("4")
    assert flops.subnet(mask, channels) == pytest.approx(
        measured_flops_per_second(enc, mask, 2.0, channels), rel=1e-9)
    narrow = narrow_subsampling(enc.embed, enc.input_size, channels or 16)
    full = sum(p.numel() for p in enc.embed.parameters())
    assert params.subnet(mask, channels) == pytest.approx(
        params.subnet(mask) - full + sum(p.numel() for p in narrow.parameters()), abs=1e-6)


def test_bad_front_end_widths_are_clear_errors():
    with pytest.raises(ValueError, match="not a subnet of this supernet"):
        _encoder(subnet_frontend_channels={"3": 4})
    with pytest.raises(ValueError, match="can keep 1..16, got 17"):
        _encoder(subnet_frontend_channels={"4": 17})
    with pytest.raises(ValueError, match="needs ESPnet's input_layer conv2d"):
        _encoder(input_layer="vgg4", vgg_channels=[2, 4, 4, 2])
    enc = _encoder(subnet_frontend_channels={})
    with pytest.raises(ValueError, match="not elastic"):
        params_table(_encoder(input_layer="vgg4", vgg_channels=[2, 4, 4, 2],
                              subnet_frontend_channels={})).subnet(enc.subnet_mask("4"), 3)
