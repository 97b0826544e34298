"""ESPnet's other Conformer options on the supernet's subnet paths: the block layout (no
macaron FFN, no conv module) in the masks and the cost model, conv1d FFNs, stochastic
depth and layer drop composed with the masks, intermediate CTC for a subnet."""

import pytest
import torch

from espnet_supernet.nets.conformer_blocks import interctc_feeds
from espnet_supernet.nets.subnet_cost import flops_table, measured_flops_per_second, params_table
from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
from tiny_models import TINY_ENCODER, make_model

LAYOUTS = {
    "no_macaron": dict(macaron_style=False),
    "no_conv": dict(use_cnn_module=False),
    "conv1d_ffn": dict(positionwise_layer_type="conv1d", positionwise_conv_kernel_size=3),
    "conv1d_linear_ffn": dict(positionwise_layer_type="conv1d-linear"),
    "no_macaron_components": dict(macaron_style=False, ffn_chunks=4, prune_heads=True),
}


def _encoder(**options):
    torch.manual_seed(0)
    return SupernetConformerEncoder(**{**TINY_ENCODER, **options})


@pytest.mark.parametrize("name", LAYOUTS)
def test_cost_model_follows_the_layout(name):
    """FLOPs: FlopCounterMode's count of the real forward; params: the modules' numel."""
    enc = _encoder(**LAYOUTS[name])
    k = enc.layout.per_block
    assert enc.num_modules == 3 * k
    flops, params = flops_table(enc, 2.0), params_table(enc)
    assert params.total == sum(p.numel() for p in enc.parameters())
    gen = torch.Generator().manual_seed(0)
    masks = [[1] * enc.num_units, enc.layout.expand([0] * k + [1] * (2 * k))]
    masks += [(torch.rand(enc.num_units, generator=gen) < 0.6).long().tolist()
              for _ in range(3)]
    for mask in masks:
        if any(mask):
            assert flops.subnet(mask) == pytest.approx(
                measured_flops_per_second(enc, mask, 2.0), rel=1e-12)


def test_static_sizes_count_the_modules_a_block_has():
    enc = _encoder(macaron_style=False, subnet_sizes=[3, 6, 9], subnet_rule="layers")
    assert enc.layout.kinds == ("mhsa", "conv", "ffn")
    assert enc.subnet_mask("3") == [0, 0, 0, 0, 0, 0, 1, 1, 1]  # the last block
    assert enc.layout.module_names()[:3] == ["block0.mhsa", "block0.conv", "block0.ffn"]
    with pytest.raises(ValueError, match="expected 9 .*3 modules x 3 blocks: mhsa, conv, ffn"):
        enc.set_subnet([1] * 12)
    modules = _encoder(use_cnn_module=False, subnet_sizes=[2], subnet_rule="modules")
    assert modules.layout.kinds == ("ffn_macaron", "mhsa", "ffn")
    assert sum(modules.subnet_mask("2")) == 2


def _count_calls(module, counter, key):
    module.register_forward_hook(lambda *_: counter.__setitem__(key, counter[key] + 1))


@pytest.mark.parametrize("option", ["stochastic_depth_rate", "layer_drop_rate"])
def test_stock_depth_dropping_composes_with_the_masks(option):
    """In training a kept block is dropped at about the rate; a masked block never runs,
    whatever the draw; in eval every kept block runs."""
    enc = _encoder(**{option: 0.5})
    enc.train()
    calls = {b: 0 for b in range(3)}
    for b, layer in enumerate(enc.encoders):
        _count_calls(layer.norm_mha, calls, b)  # the attention runs functionally
    mask = [0] * 4 + [1] * 8  # block 0 off
    front = enc.forward_frontend(torch.randn(2, 40, 20), torch.tensor([40, 30]))
    torch.manual_seed(1)
    runs = 200
    for _ in range(runs):
        enc.forward_subnet(front, enc.gates(mask))
    assert calls[0] == 0
    for b in (1, 2):
        assert 0.35 * runs < calls[b] < 0.65 * runs, calls
    enc.eval()
    enc.forward_subnet(front, enc.gates(mask))
    assert calls[0] == 0


def test_stock_stochastic_depth_and_the_models_own_train_together():
    """Stock per-block stochastic depth in the encoder and the sandwich's step-2
    stochastic depth of modules outside the smallest size (model_conf) both on."""
    model = make_model(sizes=(4, 12), stochastic_depth_rate=0.5,
                       encoder_conf=dict(stochastic_depth_rate=[0.0, 0.3, 0.3]))
    model.train()
    gates = model.stochastic_depth_gates(step=3)
    assert gates is not None and 0 in gates[:8]  # the model drops some outside size 4
    speech, lens = torch.randn(2, 60, 20), torch.tensor([60, 45])
    loss, stats, _ = model(speech, lens, torch.tensor([[2, 3, 4], [5, 6, -1]]),
                           torch.tensor([3, 2]))
    loss.backward()
    assert torch.isfinite(loss) and stats["loss_max"] is not None


def test_stochastic_depth_list_is_validated_as_stock():
    with pytest.raises(ValueError, match="Length of stochastic_depth_rate"):
        _encoder(stochastic_depth_rate=[0.1, 0.2])


def test_interctc_feeds_of_a_subnet():
    on, off = [1, 1, 1, 1], [0, 0, 0, 0]
    # blocks 1..4 (1-based), block 2 dropped: layer 2 reads block 1's output
    assert interctc_feeds([on, off, on, on], [1, 2, 3]) == [1, 2, 3]
    # nothing kept before layer 1; layer 3 would read the last kept block (the output)
    assert interctc_feeds([off, on, on, off], [1, 2, 3]) == [2]
    assert interctc_feeds([off, off, off, on], [1, 2, 3]) == []


def test_a_dropped_interctc_block_reads_the_last_kept_block_before_it():
    """Layer 2 of a subnet without block 2 reads the state after block 1: the same
    tensor as layer 1's of the same subnet."""
    mask = [1] * 4 + [0] * 4 + [1] * 4
    outs = {}
    for layers in ([1], [2]):
        enc = _encoder(interctc_layer_idx=layers).eval()
        front = enc.forward_frontend(torch.randn(2, 40, 20), torch.tensor([40, 30]))
        _, _, inter = enc.forward_subnet_intermediate(front, enc.gates(mask))
        ((layer, out),) = inter
        outs[layer] = out
    assert torch.equal(outs[1], outs[2])


def test_intermediate_ctc_losses_per_size():
    model = make_model(sizes=(4, 8, 12), encoder_conf=dict(interctc_layer_idx=[2]),
                       interctc_weight=0.3).eval()
    torch.manual_seed(0)
    speech, lens = torch.randn(2, 60, 20), torch.tensor([60, 45])
    text, text_lens = torch.tensor([[2, 3, 4], [5, 6, -1]]), torch.tensor([3, 2])
    with torch.no_grad():
        _, stats, _ = model(speech, lens, text, text_lens)
    # size 4 keeps block 3 only (no intermediate CTC), 8 keeps blocks 2-3, 12 all
    assert "loss_interctc_layer2_4" not in stats
    for size in ("8", "12"):
        inter, total = stats[f"loss_interctc_layer2_{size}"], stats[f"loss_{size}"]
        # ctc_weight 1: the size's loss is 0.7 CTC + 0.3 intermediate CTC
        ctc = (total - 0.3 * inter) / 0.7
        assert float(ctc) == pytest.approx(float(stats[f"loss_ctc_{size}"]), rel=1e-5)
    assert float(stats["loss_4"]) == pytest.approx(float(stats["loss_ctc_4"]), rel=1e-6)


def test_self_conditioning_needs_the_ctc_and_trains():
    model = make_model(sizes=(8, 12), encoder_conf=dict(
        interctc_layer_idx=[1, 2], interctc_use_conditioning=True), interctc_weight=0.5)
    enc = model.encoder
    front = enc.forward_frontend(torch.randn(2, 40, 20), torch.tensor([40, 30]))
    with pytest.raises(ValueError, match="needs the model's CTC"):
        enc.forward_subnet(front)
    model.train()
    speech, lens = torch.randn(2, 60, 20), torch.tensor([60, 45])
    loss, stats, _ = model(speech, lens, torch.tensor([[2, 3, 4], [5, 6, -1]]),
                           torch.tensor([3, 2]))
    loss.backward()
    assert enc.conditioning_layer.weight.grad is not None
    assert float(enc.conditioning_layer.weight.grad.abs().sum()) > 0
