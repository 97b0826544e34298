"""The light VGG front end (input_layer: vgg4): shapes, masks, costs, export, stock
equivalence when off."""

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from tiny_models import TINY_ENCODER
from espnet_supernet.nets.pruned_conformer_encoder import PrunedConformerEncoder
from espnet_supernet.nets.subnet_cost import (
    flops_table,
    measured_flops_per_second,
    params_table,
)
from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
from espnet_supernet.nets.vgg_subsampling import VGG4Subsampling

VGG = dict(TINY_ENCODER, input_layer="vgg4", vgg_channels=[2, 4, 4, 2], ffn_chunks=4,
           attention_heads=4, prune_heads=True)


def _encoder(**overrides):
    torch.manual_seed(0)
    return SupernetConformerEncoder(**dict(VGG, **overrides)).eval()


def test_vgg_layers_shapes_and_mask():
    enc = _encoder()
    embed = enc.embed
    assert isinstance(embed, VGG4Subsampling)
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in embed.convs] == [
        (1, 2, (3, 3)), (2, 4, (3, 3)), (4, 4, (3, 3)), (4, 2, (3, 3))]
    assert (embed.out.in_features, embed.out.out_features) == (2 * 20, 16)  # c4 x F -> d
    # params: 4 convs (9 c_in c_out + c_out) + linear (40 x 16 + 16)
    assert sum(p.numel() for p in embed.parameters()) == (
        (9 * 2 + 2) + (9 * 8 + 4) + (9 * 16 + 4) + (9 * 8 + 2) + 40 * 16 + 16)
    xs = torch.randn(2, 23, 20)
    front = enc.forward_frontend(xs, torch.tensor([23, 9]))
    assert front.xs.shape == (2, 5, 16)  # 23 // 2 // 2
    # an output frame is valid when its pooling window starts on a valid frame (9 -> 5 -> 3)
    assert front.masks.tolist() == [[[True] * 5], [[True, True, True, False, False]]]
    out, lens = enc.forward_subnet(front)
    assert out.shape == (2, 5, 16) and lens.tolist() == [5, 3]


def test_vgg_is_time_only_pooling_with_relu_after_conv_two_and_four():
    """The forward is conv1, conv2, relu, pool, conv3, conv4, relu, pool, linear."""
    embed = _encoder(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn",
                     positional_dropout_rate=0.0).embed
    x = torch.randn(1, 8, 20)
    h = x.unsqueeze(1)
    h = torch.nn.functional.max_pool2d(torch.relu(embed.convs[1](embed.convs[0](h))), (2, 1))
    h = torch.nn.functional.max_pool2d(torch.relu(embed.convs[3](embed.convs[2](h))), (2, 1))
    expected = embed.out(h.transpose(1, 2).reshape(1, 2, -1))
    got, _ = embed(x, None)
    scale = embed.pos_enc.xscale
    assert torch.allclose(got, expected * scale + embed.pos_enc.pe[:, :2], atol=1e-6)


@pytest.mark.parametrize("seconds", [2.0, 10.0])
def test_vgg_flops_counted_by_the_cost_model_equal_flop_counter(seconds):
    enc = _encoder()
    table = flops_table(enc, seconds)
    for mask in ([1] * enc.num_units, enc.layout.expand([0, 1, 1, 0] * 3)):
        assert table.subnet(mask) == pytest.approx(
            measured_flops_per_second(enc, mask, seconds), rel=1e-12, abs=0)
    # the fixed part is the front end: 2 x MACs of the 4 convs and the linear, per second
    frames, f = int(100 * seconds), 20
    macs = (frames * f * 9 * 2 + frames * f * 9 * 2 * 4 + frames // 2 * f * 9 * 4 * 4
            + frames // 2 * f * 9 * 4 * 2 + frames // 4 * 40 * 16)
    assert table.fixed == pytest.approx(2 * macs / seconds, rel=1e-12)
    assert params_table(enc).total == sum(p.numel() for p in enc.parameters())


def test_vgg_share_of_the_paper_encoder_is_below_the_smallest_budget():
    """At the papers' TED-LIUM size (d 384, FFN 1536, 6 heads, 12 blocks, 80 mel bins)
    ESPnet's conv2d front end alone is more than the smallest FLOPs budget (0.337);
    the authors' VGG (32, 64, 64, 32) is about a quarter, so 0.337 is reachable."""
    paper = dict(input_size=80, output_size=384, linear_units=1536, attention_heads=6,
                 num_blocks=12, cnn_module_kernel=31, rel_pos_type="latest",
                 pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn")
    shares = {}
    for layer in ("conv2d", "vgg4"):
        table = flops_table(SupernetConformerEncoder(**dict(paper, input_layer=layer)).eval())
        shares[layer] = table.fixed / table.total
    assert shares["conv2d"] > 0.337 > shares["vgg4"] > 0.2, shares


def test_vgg_off_is_stock_and_on_exports_as_pruned_conformer():
    torch.manual_seed(0)
    stock_args = {k: v for k, v in TINY_ENCODER.items()}
    stock = ConformerEncoder(**stock_args).eval()
    ours = SupernetConformerEncoder(**stock_args).eval()
    ours.load_state_dict(stock.state_dict(), strict=True)
    xs, lens = torch.randn(2, 40, 20), torch.tensor([40, 31])
    assert torch.allclose(stock(xs, lens)[0], ours(xs, lens)[0], atol=1e-5)
    enc = _encoder()
    pruned = PrunedConformerEncoder(
        20, [dict(ffn_macaron=24, mhsa=4, conv=1, ffn=24)] * 3,
        **{k: v for k, v in VGG.items()
           if k not in ("input_size", "num_blocks", "ffn_chunks", "prune_heads")}).eval()
    pruned.load_state_dict(enc.state_dict(), strict=False)
    missing = pruned.load_state_dict(enc.state_dict(), strict=False)
    assert not missing.missing_keys
    assert torch.allclose(pruned(xs, lens)[0], enc(xs, lens)[0], atol=1e-6)
