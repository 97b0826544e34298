"""SupernetConformerEncoder: stock compatibility, subnet switching, skipped modules."""

import random

import pytest
import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from tiny_models import TINY_ENCODER
from espnet_supernet.nets.subnet_cost import flop_counter, params_table, subnet_params
from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder

POS_VARIANTS = {
    "latest_rel": dict(rel_pos_type="latest", pos_enc_layer_type="rel_pos",
                       selfattention_layer_type="rel_selfattn"),
    "legacy_rel": dict(rel_pos_type="legacy", pos_enc_layer_type="rel_pos",
                       selfattention_layer_type="rel_selfattn"),
    "abs_pos": dict(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn"),
}


def _pair(**overrides):
    torch.manual_seed(1)
    kw = {**TINY_ENCODER, **overrides}
    stock = ConformerEncoder(**kw).eval()
    supernet = SupernetConformerEncoder(**kw, subnet_sizes=[4, 8, 12]).eval()
    supernet.load_state_dict(stock.state_dict(), strict=True)
    return stock, supernet


@pytest.mark.parametrize("variant", sorted(POS_VARIANTS))
@pytest.mark.parametrize("normalize_before", [True, False])
def test_all_modules_on_equals_stock(variant, normalize_before, feats):
    stock, supernet = _pair(**POS_VARIANTS[variant], normalize_before=normalize_before)
    # Give BatchNorm non-trivial statistics so that a wrong slot would show.
    for layer in stock.encoders:
        layer.conv_module.norm.running_mean.uniform_(-1, 1)
        layer.conv_module.norm.running_var.uniform_(0.5, 2)
    supernet.load_state_dict(stock.state_dict(), strict=True)
    supernet.set_subnet(None)
    with torch.no_grad():
        ref, ref_lens, _ = stock(*feats)
        out, lens, _ = supernet(*feats)
    assert out.shape == ref.shape == (2, 14, 16)
    assert torch.equal(lens, ref_lens)
    assert (out - ref).abs().max().item() <= 1e-5


def test_stock_state_dict_loads_strict_and_keeps_supernet_state():
    stock, supernet = _pair()
    keys = set(supernet.state_dict())
    assert set(stock.state_dict()) < keys  # the same names, plus supernet state
    extra = keys - set(stock.state_dict())
    assert "subnet_mask_table" in extra
    assert all(k == "subnet_mask_table" or "slot_running" in k for k in extra)
    assert supernet.subnet_mask("4") == [0] * 8 + [1] * 4


def test_checkpoint_with_other_subnet_count_is_rejected():
    _, supernet = _pair()
    other = SupernetConformerEncoder(**TINY_ENCODER, subnet_sizes=[4, 12])
    with pytest.raises(RuntimeError, match="use the config the checkpoint was trained with"):
        other.load_state_dict(supernet.state_dict())


def test_named_sizes_layers_rule_and_order():
    enc = SupernetConformerEncoder(**TINY_ENCODER, subnet_sizes=[12, 4, 8])
    assert enc.subnet_names == ["4", "8", "12"]
    assert enc.subnet_mask("8") == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    assert enc.subnet_mask("12") == [1] * 12


def test_explicit_masks_and_modules_rule():
    enc = SupernetConformerEncoder(
        **TINY_ENCODER, subnet_sizes=[3], subnet_rule="modules",
        subnet_masks={"convs": [0, 0, 1, 0] * 3},
    )
    assert enc.subnet_names == ["3", "convs"]
    assert enc.subnet_mask("3") == [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert enc.subnet_mask("convs") == [0, 0, 1, 0] * 3


@pytest.mark.parametrize("bad, match", [
    (dict(subnet_sizes=[5]), "multiple of 4"),
    (dict(subnet_sizes=[16]), "outside the supernet"),
    (dict(subnet_masks={"x": [1, 0]}), "expected 12"),
    (dict(ctc_trim=True), "does not support ctc_trim"),
    (dict(concat_after=True), "does not support concat_after"),
    (dict(macaron_style=False, subnet_sizes=[4]), "multiple of 3"),
    (dict(bn_stats="global"), "bn_stats must be one of"),
])
def test_invalid_configs_are_rejected(bad, match):
    kw = {**TINY_ENCODER, **bad}
    with pytest.raises(ValueError, match=match):
        SupernetConformerEncoder(**kw)


def test_set_subnet_validates_and_unknown_name_lists_valid():
    _, enc = _pair()
    with pytest.raises(ValueError, match="expected 12"):
        enc.set_subnet([1] * 11)
    with pytest.raises(ValueError, match="0 or 1"):
        enc.set_subnet([2] * 12)
    with pytest.raises(KeyError, match="4, 8, 12"):
        enc.set_named_subnet("7")


def _count_calls(enc):
    calls = {}
    for i, layer in enumerate(enc.encoders):
        # the modules run through their weights (see elastic_feed_forward,
        # elastic_attention, convolution_forward): hook their pre-norms
        for j, mod in enumerate([layer.norm_ff_macaron, layer.norm_mha,
                                 layer.norm_conv, layer.norm_ff]):
            mod.register_forward_hook(
                lambda *a, key=4 * i + j: calls.__setitem__(key, calls.get(key, 0) + 1))
    return calls


def test_masked_modules_are_never_called_and_cost_no_flops(feats):
    _, enc = _pair()
    calls = _count_calls(enc)
    rng = random.Random(0)
    mask = [rng.randint(0, 1) for _ in range(12)]
    mask[5] = 1
    enc.set_subnet(mask)
    counter = flop_counter()
    with torch.no_grad(), counter:
        enc(*feats)
    assert sorted(calls) == [i for i, keep in enumerate(mask) if keep]
    flops_sub = counter.get_total_flops()
    enc.set_subnet(None)
    counter_full = flop_counter()
    with torch.no_grad(), counter_full:
        enc(*feats)
    assert flops_sub < counter_full.get_total_flops()
    # Dropping one more module removes exactly its FLOPs: nothing else is computed.
    less = list(mask)
    less[5] = 0
    enc.set_subnet(less)
    c1 = flop_counter()
    with torch.no_grad(), c1:
        enc(*feats)
    only_5 = [0] * 12
    only_5[5] = 1
    enc.set_subnet(only_5)
    c2 = flop_counter()
    with torch.no_grad(), c2:
        enc(*feats)
    front = flop_counter()
    with torch.no_grad(), front:
        enc.forward_frontend(*feats)
    assert c1.get_total_flops() + c2.get_total_flops() - front.get_total_flops() == flops_sub


def test_soft_gates_scale_module_outputs_and_pass_gradients(feats):
    _, enc = _pair()
    front = enc.forward_frontend(*feats)
    gates = [torch.tensor(0.5, requires_grad=True) for _ in range(12)]
    out, _ = enc.forward_subnet(front, gates=gates)
    out.sum().backward()
    assert all(g.grad is not None and g.grad.abs() > 0 for g in gates)
    # Hard zeros skip whole blocks (identity); soft zeros still apply each final norm.
    zero, _ = enc.forward_subnet(front, gates=[0] * 12)
    assert torch.allclose(zero, enc.after_norm(front.xs), atol=1e-6)
    soft, _ = enc.forward_subnet(front, gates=[torch.tensor(0.0)] * 12)
    x = front.xs
    for layer in enc.encoders:
        x = layer.norm_final(x)
    assert torch.allclose(soft, enc.after_norm(x), atol=1e-6)


def test_subnet_of_whole_blocks_equals_a_shallower_stock_conformer(feats):
    _, enc = _pair()
    enc.set_named_subnet("8")  # blocks 1 and 2 of 3
    kept = [1, 2]
    stock = ConformerEncoder(**{**TINY_ENCODER, "num_blocks": 2}).eval()
    state = {}
    for key, value in enc.state_dict().items():
        if key.startswith("encoders."):
            block, rest = key.split(".", 2)[1:]
            if int(block) not in kept:
                continue
            key = f"encoders.{kept.index(int(block))}.{rest}"
        state[key] = value
    slot = enc.subnet_names.index("8")
    for i, b in enumerate(kept):  # the size's own BatchNorm statistics
        norm = enc.encoders[b].conv_module.norm
        state[f"encoders.{i}.conv_module.norm.running_mean"] = norm.slot_running_mean[slot]
        state[f"encoders.{i}.conv_module.norm.running_var"] = norm.slot_running_var[slot]
    stock.load_state_dict(state, strict=False)
    with torch.no_grad():
        out, _, _ = enc(*feats)
        ref, _, _ = stock(*feats)
    assert (out - ref).abs().max() < 1e-5
    assert subnet_params(enc, enc.subnet_mask("8")) == sum(p.numel() for p in stock.parameters())


def test_param_counts_add_up():
    _, enc = _pair()
    table = params_table(enc)
    fixed, per_module = table.fixed, [m.per_unit for m in table.modules]
    assert all(m.overhead == 0 for m in table.modules)  # whole modules: one unit each
    total = sum(p.numel() for p in enc.parameters())
    block = table.block_overhead  # a kept block's final norm
    assert block == 2 * 16
    assert fixed + 3 * block + sum(per_module) == total
    assert subnet_params(enc, [1] * 12) == total
    assert subnet_params(enc, enc.subnet_mask("4")) == fixed + block + sum(per_module[8:])
    # macaron FFN and FFN have the same size; conv and MHSA differ from them
    assert per_module[0] == per_module[3]


def test_learned_masks_travel_with_the_state_dict():
    _, enc = _pair()
    new_mask = [1, 0, 1, 0] * 3
    enc.set_subnet_masks({"8": new_mask})
    fresh = SupernetConformerEncoder(**TINY_ENCODER, subnet_sizes=[4, 8, 12])
    fresh.load_state_dict(enc.state_dict(), strict=True)
    assert fresh.subnet_mask("8") == new_mask
    fresh.set_named_subnet("8")
    assert fresh.encoders[0].conv_module.norm.active_slot == 1
