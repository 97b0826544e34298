"""Component-wise elasticity: sliced FFN chunks and attention heads, unit masks."""

import copy

import pytest
import torch

from tiny_models import TINY_ENCODER
from espnet_supernet.nets import elastic_feed_forward as elastic_feed_forward_module
from espnet_supernet.nets.elastic_feed_forward import elastic_feed_forward
from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
from espnet_supernet.nets.subnet_cost import flop_counter
from espnet_supernet.nets.unit_gates import UnitSlice

COMPONENTS = dict(TINY_ENCODER, attention_heads=4, ffn_chunks=4, prune_heads=True)
PER_BLOCK = 4 + 4 + 1 + 4  # macaron FFN chunks, heads, conv, FFN chunks


def make_encoder(**kw):
    torch.manual_seed(0)
    return SupernetConformerEncoder(**{**COMPONENTS, **kw}).eval()


def zeroed_copy(enc, units):
    """Full-size encoder whose dropped chunks / heads contribute nothing (same weights)."""
    ref = copy.deepcopy(enc)
    ref.set_subnet(None)
    with torch.no_grad():
        for b, layer in enumerate(ref.encoders):
            base = b * PER_BLOCK
            for ff, start in ((layer.feed_forward_macaron, base), (layer.feed_forward, base + 9)):
                for c in range(4):
                    if not units[start + c]:
                        ff.w_2.weight[:, c * 6:(c + 1) * 6] = 0
            for h in range(4):
                if not units[base + 4 + h]:
                    layer.self_attn.linear_out.weight[:, h * 4:(h + 1) * 4] = 0
    return ref


def test_layout_and_unit_masks():
    enc = make_encoder(subnet_sizes=[4, 12])
    assert enc.num_units == 3 * PER_BLOCK and enc.num_modules == 12
    assert enc.subnet_mask("4") == [0] * 26 + [1] * 13  # the last block, every unit
    assert enc.layout.modules_of(enc.subnet_mask("4")) == [0] * 8 + [1] * 4
    assert enc.layout.unit_names()[4:9] == [f"block0.mhsa.head{h}" for h in range(4)] + [
        "block0.conv"]
    with pytest.raises(ValueError, match="39 units"):
        enc.set_subnet([1] * 10)
    with pytest.raises(ValueError, match="ffn_chunks must divide"):
        make_encoder(ffn_chunks=5)


def test_sliced_subnet_equals_full_computation_with_dropped_components_zeroed(feats):
    enc = make_encoder()
    gen = torch.Generator().manual_seed(3)
    units = (torch.rand(enc.num_units, generator=gen) < 0.6).long().tolist()
    for b in range(3):  # keep every conv so that the zeroed copy runs the same modules
        units[b * PER_BLOCK + 8] = 1
        units[b * PER_BLOCK] = units[b * PER_BLOCK + 4] = units[b * PER_BLOCK + 9] = 1
    enc.set_subnet(units)
    gates = enc.gates(units)
    assert any(isinstance(g, UnitSlice) for g in gates)
    xs, lens = feats
    with torch.no_grad():
        out, olens, _ = enc(xs, lens)
        ref, rlens, _ = zeroed_copy(enc, units)(xs, lens)
    assert out.shape == ref.shape and torch.equal(olens, rlens)
    assert (out - ref).abs().max() < 1e-5


def test_sliced_feed_forward_uses_smaller_matmuls():
    enc = make_encoder()
    ff = enc.encoders[0].feed_forward
    x = torch.randn(2, 7, 16)
    half = UnitSlice(torch.arange(12), torch.arange(2), 0.5)
    counter = flop_counter()
    with counter, torch.no_grad():
        elastic_feed_forward(ff, x, half)
    assert counter.get_total_flops() == 2 * 2 * 7 * (16 * 12 + 12 * 16)  # half of 24 units


def test_inference_slices_are_cached_until_the_weights_change(feats):
    enc = make_encoder()
    units = [1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 0, 0] * 3  # non-contiguous chunks and heads
    enc.set_subnet(units)
    gate = enc.gates(units)[0]
    xs, lens = feats
    with torch.no_grad():
        first, _, _ = enc(xs, lens)
        cached = dict(gate.weights)
        assert cached  # the macaron FFN's sliced W1, b1, W2
        again, _, _ = enc(xs, lens)
        assert all(gate.weights[k][1] is v[1] for k, v in cached.items())  # reused
        assert torch.equal(first, again)
        for layer in enc.encoders:  # an in-place update (as an optimizer step)
            layer.feed_forward_macaron.w_1.weight.mul_(0.5)
            layer.self_attn.linear_q.weight.mul_(0.5)
        updated, _, _ = enc(xs, lens)
        ref, _, _ = zeroed_copy(enc, units)(xs, lens)
    assert not torch.equal(updated, first)
    assert (updated - ref).abs().max() < 1e-5  # rebuilt from the new weights
    gate.weights.clear()
    enc(xs, lens)[0].sum().backward()  # with gradients: nothing cached, grads flow
    assert not gate.weights
    assert enc.encoders[0].feed_forward_macaron.w_1.weight.grad.abs().sum() > 0


def test_position_scores_equal_batched_matmul():
    from espnet_supernet.nets.elastic_attention import position_scores

    q, p = torch.randn(3, 5, 4, 8), torch.randn(1, 4, 9, 8)
    ref = torch.matmul(q.transpose(1, 2), p.transpose(-2, -1))
    out = position_scores(q, p)
    assert out.shape == (3, 4, 5, 9) and (out - ref).abs().max() < 1e-5
    assert out.stride()[2:] == (9, 1)  # rows contiguous: the relative shift stays a view
    p3 = torch.randn(3, 4, 9, 8)  # one table per utterance: the batched matmul
    assert torch.allclose(position_scores(q, p3),
                          torch.matmul(q.transpose(1, 2), p3.transpose(-2, -1)))


def test_soft_unit_gates_weight_chunks_and_heads(feats):
    enc = make_encoder()
    xs, lens = feats
    front = enc.forward_frontend(xs, lens)
    ones = [torch.ones(4), torch.ones(4), 1, torch.ones(4)] * 3
    with torch.no_grad():
        full, _ = enc.forward_subnet(front, [1] * 12)
        soft, _ = enc.forward_subnet(front, ones)
    assert (full - soft).abs().max() < 1e-5
    weights = torch.rand(4, requires_grad=True)
    gates = [weights, torch.ones(4), 1, torch.ones(4)] + [1] * 8
    out, _ = enc.forward_subnet(front, gates)
    out.sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0


def test_adaptive_ffn_dropout_scales_with_kept_chunks(monkeypatch):
    enc = make_encoder(dropout_rate=0.4).train()
    ff = enc.encoders[0].feed_forward
    quarter = UnitSlice(torch.arange(6), torch.arange(1), 0.25)
    seen = []
    monkeypatch.setattr(elastic_feed_forward_module, "dropout",
                        lambda h, p, training: seen.append(p) or h)
    elastic_feed_forward(ff, torch.ones(1, 3, 16), quarter, adaptive_dropout=True)
    elastic_feed_forward(ff, torch.ones(1, 3, 16), quarter, adaptive_dropout=False)
    elastic_feed_forward(ff, torch.ones(1, 3, 16), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert seen == [pytest.approx(0.1), pytest.approx(0.4), pytest.approx(0.2)]


def test_relative_shift_view_equals_espnet_rel_shift():
    from espnet.nets.pytorch_backend.transformer.attention import (
        RelPositionMultiHeadedAttention,
    )

    from espnet_supernet.nets.elastic_attention import relative_shift

    att = RelPositionMultiHeadedAttention(4, 32, 0.0)
    for T in (1, 2, 5, 37):
        x = torch.randn(3, 4, T, 2 * T - 1)
        with torch.no_grad():
            view = relative_shift(att, x)
        assert view.data_ptr() == x[..., T - 1:].data_ptr()  # no copy
        assert torch.equal(view, att.rel_shift(x))
        x.requires_grad_(True)
        assert torch.equal(relative_shift(att, x), att.rel_shift(x))


def test_conv_module_with_folded_batch_norm_equals_espnet():
    from espnet.nets.pytorch_backend.conformer.convolution import ConvolutionModule
    from espnet.nets.pytorch_backend.conformer.swish import Swish

    from espnet_supernet.nets.conformer_blocks import convolution_forward
    from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d

    torch.manual_seed(0)
    conv = ConvolutionModule(16, 5, Swish())
    with torch.no_grad():
        conv.norm.running_mean.normal_()
        conv.norm.running_var.uniform_(0.5, 2.0)
        conv.norm.weight.normal_()
        conv.norm.bias.normal_()
    x = torch.randn(2, 30, 16)
    for mode in ("eval", "train"):
        conv.train(mode == "train")
        torch.manual_seed(1)
        ref = conv(x)
        torch.manual_seed(1)
        torch.testing.assert_close(convolution_forward(conv, x), ref, atol=1e-5, rtol=1e-5)
    conv.eval()
    switchable = SwitchableBatchNorm1d.from_batch_norm(conv.norm, 2)
    with torch.no_grad():
        switchable.slot_running_mean[1].normal_()
    conv.norm = switchable.eval()
    switchable.active_slot = 1  # a size's own statistics
    expected = conv(x)
    torch.testing.assert_close(convolution_forward(conv, x), expected, atol=1e-5, rtol=1e-5)
    switchable.active_slot = None  # the shared statistics differ from slot 1's
    assert not torch.allclose(convolution_forward(conv, x), expected, atol=1e-3)


def test_folded_conv_weights_are_cached_until_the_statistics_change():
    """Without gradients the BN-folded depthwise weights are kept; another size's slot, a
    re-estimation (in-place update) or new weights must give fresh results."""
    from espnet.nets.pytorch_backend.conformer.convolution import ConvolutionModule
    from espnet.nets.pytorch_backend.conformer.swish import Swish

    from espnet_supernet.nets.conformer_blocks import convolution_forward
    from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d

    torch.manual_seed(0)
    conv = ConvolutionModule(16, 5, Swish())
    conv.norm = SwitchableBatchNorm1d.from_batch_norm(conv.norm, 2).eval()
    conv.eval()
    with torch.no_grad():
        conv.norm.slot_running_mean.normal_()
        conv.norm.slot_running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 30, 16)

    def check(slot):
        conv.norm.active_slot = slot
        expected = conv(x)
        with torch.inference_mode():
            out = convolution_forward(conv, x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
        return out

    first = check(1)
    assert "folded_bn" in conv.depthwise_conv._inference_cache  # kept for the next call
    assert not torch.allclose(check(0), first, atol=1e-3)  # the other slot's statistics
    torch.testing.assert_close(check(1), first)
    with torch.no_grad():
        conv.norm.slot_running_mean[1].add_(0.5)  # a BN re-estimation, in place
    assert not torch.allclose(check(1), first, atol=1e-3)
    with torch.no_grad():
        conv.depthwise_conv.weight.mul_(2.0)  # an optimizer step
    check(1)
