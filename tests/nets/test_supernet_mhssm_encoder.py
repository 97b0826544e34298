"""``encoder: supernet_mhssm``: elastic depth and width of the MH-SSM encoder."""

import pytest
import torch

from espnet_supernet.nets.mhssm_encoder import MHSSMEncoder
from espnet_supernet.nets.supernet_mhssm_encoder import SupernetMHSSMEncoder
from espnet_supernet.nets.subnet_cost import flop_counter

TINY = dict(input_size=20, output_size=16, ssm_heads=2, ssm_state_size=8, linear_units=32,
            num_blocks=3, dropout_rate=0.0, cnn_module_kernel=5)
SUBNETS = {"small": {"depth": 1, "width": 0.5}, "mid": {"depth": 2, "width": 0.75}}


def make():
    torch.manual_seed(0)
    return SupernetMHSSMEncoder(**TINY, subnets=SUBNETS).eval()


def test_names_ordered_by_size_and_full_equals_the_plain_encoder():
    enc = make()
    assert enc.subnet_names == ["small", "mid", "full"]
    plain = MHSSMEncoder(**TINY).eval()
    plain.load_state_dict(enc.state_dict(), strict=True)  # same parameter names
    x, lens = torch.randn(2, 120, 20), torch.tensor([120, 100])
    with torch.no_grad():
        assert torch.allclose(enc(x, lens)[0], plain(x, lens)[0], atol=1e-6)
    with pytest.raises(ValueError, match="unknown subnet 'tiny'; valid names: small, mid"):
        enc.set_named_subnet("tiny")
    with pytest.raises(ValueError, match="depth must be in 1..3"):
        SupernetMHSSMEncoder(**TINY, subnets={"x": {"depth": 4, "width": 1.0}})


def test_every_size_streams_as_it_decodes_whole():
    enc = make()
    x = torch.randn(1, 90, 20)
    outs = {}
    for name in enc.subnet_names:  # small: 1 block at half width; mid: 2 at 0.75; full
        enc.set_named_subnet(name)
        with torch.no_grad():
            whole = enc(x, torch.tensor([90]))[0]
        pieces, state = [], None
        for start in range(0, 90, 17):  # chunks that do not align with the subsampling
            out, state = enc.forward_streaming(x[:, start:start + 17], state)
            pieces.append(out)
        streamed = torch.cat(pieces, 1)
        assert streamed.shape == whole.shape == (1, 21, 16), name
        torch.testing.assert_close(streamed, whole, atol=1e-4, rtol=1e-4)
        outs[name] = streamed
        # a narrow size carries only its kept SSM channels: 2 heads x its width
        expected = 2 * enc.widths(enc.subnets[name])[1]
        assert [s.size(1) for s in state.ssm[: enc.subnets[name]["depth"]]] == \
            [expected] * enc.subnets[name]["depth"], name
    assert not torch.allclose(outs["small"], outs["full"], atol=1e-3)


def test_parameter_counts_per_size():
    enc = make()
    full = enc.subnets["full"]
    assert enc.subnet_params(full) == sum(p.numel() for p in enc.parameters())
    counts = [enc.subnet_params(enc.subnets[n]) for n in enc.subnet_names]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    # one block fewer removes exactly one block's parameters
    block = sum(p.numel() for p in enc.encoders[0].parameters())
    assert enc.subnet_params({"depth": 2, "width": 1.0}) == counts[-1] - block
    # width 0.5 by hand (D 16, 2 heads of 8 channels -> 4, FFN 32 -> 16 units, N 8):
    ffns = 2 * (16 * 16 + 16 + 16 * 16 + 16)
    ssm = (16 + 1) * 2 * 4 + (1 + 4 + 4 + 8 + 1) * 2 * 4 + (1 * 4 + 1) * 16
    conv = (32 * 16 + 32) + (16 * 5 + 16) + 2 * 16 + (16 * 16 + 16)
    norms = 5 * 2 * 16
    small = enc.subnet_params(enc.subnets["small"])
    assert small - enc.subnet_params({"depth": 0, "width": 0.5}) == ffns + ssm + conv + norms


def test_dropped_blocks_and_slices_cost_nothing():
    enc = make()
    calls = []
    for i, layer in enumerate(enc.encoders):
        layer.norm_final.register_forward_hook(lambda *a, i=i: calls.append(i))
    x, lens = torch.randn(1, 120, 20), torch.tensor([120])
    flops = {}
    for name in enc.subnet_names:
        enc.set_named_subnet(name)
        calls.clear()
        counter = flop_counter()
        with torch.no_grad(), counter:
            out, olens, _ = enc(x, lens)
        flops[name] = counter.get_total_flops()
        assert calls == list(range(enc.subnets[name]["depth"]))
        assert out.shape == (1, int(olens[0]), 16) and torch.isfinite(out).all()
    assert flops["small"] < flops["mid"] < flops["full"]


def test_narrow_subnet_trains_the_shared_weights():
    enc = make().train()
    enc.set_named_subnet("small")
    out, _, _ = enc(torch.randn(2, 80, 20), torch.tensor([80, 60]))
    out.pow(2).mean().backward()
    w1 = enc.encoders[0].feed_forward.w_1.weight.grad
    assert w1[:16].abs().sum() > 0 and w1[16:].abs().sum() == 0  # first half of the units
    assert enc.encoders[1].feed_forward.w_1.weight.grad is None  # block not in the subnet
