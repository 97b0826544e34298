"""``sparsity: omni``: levels as named subnets, masked forward, gradients, training plan."""

import copy

import pytest
import torch

from espnet_supernet.sparsity.omni_sparsity import OmniSparsity, level_name
from tiny_models import make_model


def batch():
    torch.manual_seed(1)
    return (torch.randn(2, 50, 20), torch.tensor([50, 40]),
            torch.randint(1, 11, (2, 5)), torch.tensor([5, 4]))


def sparse_model(levels=(0.0, 0.5, 0.9), sizes=(4, 12), **conf):
    model = make_model(sizes=sizes)  # the levels use the largest size: all modules
    model.set_sparsity(OmniSparsity(levels=levels, warmup_steps=0, **conf))
    return model


def test_levels_are_the_named_subnets():
    model = sparse_model()
    assert model.subnet_names == ["sp90", "sp50", "sp0"]
    assert level_name(0.875) == "sp87.5"
    # every FFN W1/W2, attention q/k/v/out/pos and pointwise conv of the 3 blocks
    assert len(model.sparsity.targets) == 3 * (4 + 5 + 2)
    with pytest.raises(ValueError, match="valid names: sp90, sp50, sp0"):
        model.set_subnet("sp60")
    model.set_subnet("sp50")
    assert model.encoder.active_mask == model.encoder.subnet_mask(model.encoder_size)


def test_masked_forward_equals_zeroed_weights_and_leaves_state_alone():
    model = sparse_model().eval()
    speech, lens, _, _ = batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_subnet("sp90")
    with torch.no_grad():
        out, _ = model.encode(speech, lens)
    baked = copy.deepcopy(model)
    baked.sparsity.bake()
    baked.sparsity = None
    baked.subnet_names = model.encoder.subnet_names
    baked.set_subnet(None)
    with torch.no_grad():
        ref, _ = baked.encode(speech, lens)
        dense, _, _ = model.encoder(speech, lens)  # outside encode: no masks
    assert torch.allclose(out, ref, atol=1e-5)
    assert (out - dense).abs().max() > 1e-2
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in after if not k.startswith("sparsity."))
    w = baked.encoder.encoders[0].feed_forward.w_1.weight
    assert int((w == 0).sum()) == round(0.9 * w.numel())
    assert model.sparsity.nonzero_params([2] * 33) < 0.11 * model.sparsity.prunable_params


def test_gradients_only_where_the_mask_keeps_weights():
    model = sparse_model(levels=[0.6])  # one level: every step trains it alone
    model.train()
    loss, stats, _ = model(*batch())
    assert set(stats) >= {"loss_max", "loss"} and torch.isfinite(loss)
    loss.backward()
    for i, target in enumerate(model.sparsity.targets):
        module, attr, _ = target.members[0]
        grad = module._parameters[attr].grad
        pruned = model.sparsity.keep(i) == 0
        assert int(pruned.sum()) == round(0.6 * grad.numel())
        assert bool((grad[pruned] == 0).all()), target.name
        assert grad[~pruned].abs().sum() > 0, target.name


def test_sandwich_trains_dense_sparsest_and_random_and_validates_every_level():
    model = sparse_model(levels=(0.0, 0.3, 0.5, 0.9))
    model.train()
    plan = model.sandwich_plan(0)
    assert plan[0][:2] == ("max", "sp0") and plan[1][:2] == ("min", "sp90")
    assert plan[2][1] in ("sp30", "sp50")
    loss, stats, _ = model(*batch())
    loss.backward()
    w = model.encoder.encoders[1].feed_forward.w_2.weight
    assert bool((w.grad != 0).all())  # the dense pass reaches every weight
    model.eval()
    with torch.no_grad():
        _, stats, _ = model(*batch())
    assert {f"cer_ctc_{n}" for n in model.subnet_names} <= set(stats)


def test_masks_refresh_on_schedule_with_warmup():
    model = sparse_model(levels=(0.0, 0.8))
    sparsity = model.sparsity
    sparsity.warmup_total.fill_(100)
    sparsity.update_interval = 10
    w = model.encoder.encoders[0].feed_forward.w_1.weight
    index = [t.name for t in sparsity.targets].index("encoders.0.feed_forward.w_1.weight")
    sparsity.before_step(0)
    assert int((sparsity.keep(index) <= 1).sum()) == 0  # step 0 of the warm-up: dense
    sparsity.before_step(5)
    assert int(sparsity.refreshed_at) == 0  # not due yet
    sparsity.before_step(50)
    assert int((sparsity.keep(index) <= 1).sum()) == round(0.7 * w.numel())
    sparsity.before_step(100)
    assert int((sparsity.keep(index) <= 1).sum()) == round(0.8 * w.numel())


def test_structured_ffn_rows():
    model = sparse_model(levels=(0.0, 0.5), layer_types=["ffn"], structure="ffn_rows")
    sparsity = model.sparsity
    assert len(sparsity.targets) == 6 and all(t.units == 24 for t in sparsity.targets)
    model.set_subnet("sp50")
    ffn = model.encoder.encoders[2].feed_forward_macaron
    with sparsity.applied():
        w1, b1, w2 = ffn.w_1.weight, ffn.w_1.bias, ffn.w_2.weight
    rows = w1.abs().sum(1) == 0
    assert int(rows.sum()) == 12 and bool((b1[rows] == 0).all())
    assert torch.equal(w2.abs().sum(0) == 0, rows)  # the same hidden units
    with pytest.raises(ValueError, match="layer_types: \\[ffn\\]"):
        OmniSparsity(structure="ffn_rows")


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="unknown layer types"):
        OmniSparsity(layer_types=["lstm"])
    model = make_model(sizes=(4, 8), per_size_ctc=True)
    with pytest.raises(ValueError, match="per_size_ctc"):
        model.set_sparsity(OmniSparsity())


def test_transducer_levels_train_and_report(tmp_path):
    """Omni-sparsity on the MH-SSM RNN-T supernet (model: supernet_transducer)."""
    from tiny_models import make_transducer as build, transducer_batch as batch

    _, model = build(tmp_path)
    model.set_sparsity(OmniSparsity(levels=(0.0, 0.5, 0.8), layer_types=["ffn", "ssm", "conv"],
                                    warmup_steps=0))
    assert model.subnet_names == ["sp80", "sp50", "sp0"]
    kinds = {t.name.split(".")[2] for t in model.sparsity.targets}
    assert kinds == {"self_attn", "feed_forward", "feed_forward_macaron", "conv_module"}
    model.train()
    loss, stats, _ = model(**batch())
    assert torch.isfinite(loss) and {"loss_max", "loss_min", "loss_rand0"} <= set(stats)
    loss.backward()
    index = [t.name for t in model.sparsity.targets].index("encoders.0.self_attn.mhssm.in_proj.weight")
    grad = model.encoder.encoders[0].self_attn.mhssm.in_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.eval()
    model.set_subnet("sp80")
    with torch.no_grad():
        loss80 = model.active_loss(**batch())
        model.set_subnet("sp0")
        loss0 = model.active_loss(**batch())
    assert torch.isfinite(loss80) and float(loss80) != float(loss0)
    assert int((model.sparsity.keep(index) <= 2).sum()) == round(0.8 * grad.numel())


@pytest.mark.parametrize("mixed", [False, True])
def test_random_slots_train_mixed_per_block_levels(mixed):
    """mixed_levels: the random slot's blocks each draw a level (from the step); the
    dense and sparsest slots stay uniform. Without it every slot is uniform."""
    model = sparse_model(levels=(0.0, 0.3, 0.5, 0.9), mixed_levels=mixed)
    sparsity = model.sparsity
    seen = []
    applied = sparsity.applied

    def recording():
        seen.append(list(sparsity.active))
        return applied()

    sparsity.applied = recording
    model.train()
    mixes = []
    for step in range(6):
        seen.clear()
        model.sandwich_step.fill_(step)
        loss, _, _ = model(*batch())
        dense, sparsest, rand = seen
        assert set(dense) == {0} and set(sparsest) == {3}  # uniform
        per_block = {}
        for target, level in zip(sparsity.targets, rand):
            per_block.setdefault(target.block, set()).add(level)
        assert all(len(v) == 1 for v in per_block.values())  # one level per block
        mixes.append(len({next(iter(v)) for v in per_block.values()}))
        if mixed:
            expected = sparsity.sample_layerwise(step * 1_000_003 + 1)
            assert {b: next(iter(v)) for b, v in per_block.items()} == expected
    assert (max(mixes) > 1) == mixed  # some step mixes levels across blocks


def _conv_norms(model):
    return [layer.conv_module.norm for layer in model.encoder.encoders]


def test_each_level_keeps_its_own_batch_norm_statistics(tmp_path):
    """per_level_bn (default): a slot per level; a level's training pass updates only
    its slot (and the shared statistics), eval uses it, and a mixed per-layer pass uses
    the shared ones (an export reads the active slot, as for sizes)."""
    model = sparse_model(levels=(0.0, 0.5, 0.9))
    norms = _conv_norms(model)
    assert all(n.slot_running_mean.shape == (3, n.num_features) for n in norms)
    model.set_subnet("sp50")
    assert [n.active_slot for n in norms] == [1] * len(norms)  # sp90, sp50, sp0
    before = norms[0].slot_running_mean.clone()
    model.train()
    speech, lens, _, _ = batch()
    with model.sparse_weights():
        model.encoder(speech, lens)
    changed = (norms[0].slot_running_mean != before).any(dim=1).tolist()
    assert changed == [False, True, False]
    # the levels' eval outputs differ by their statistics alone (same weights, level 0)
    model.eval()
    with torch.no_grad():
        norms[0].slot_running_mean[2].add_(1.0)
        model.set_subnet("sp0")
        shifted, _, _ = model.encoder(speech, lens)
        norms[0].slot_running_mean[2].sub_(1.0)
        plain, _, _ = model.encoder(speech, lens)
    assert (shifted - plain).abs().max() > 1e-3
    model.sparsity.mixed_levels = True
    model.set_subnet("sp50")
    model.mix_levels("rand0", 3)
    assert [n.active_slot for n in norms] == [None] * len(norms)
    model.mix_levels("max", 3)  # a uniform slot keeps its level's statistics
    model.set_subnet("sp50")
    assert norms[0].active_slot == 1


def test_per_level_statistics_survive_a_load_and_old_checkpoints_load():
    model = sparse_model(levels=(0.0, 0.5, 0.9))
    with torch.no_grad():
        for n in _conv_norms(model):
            n.slot_running_var.uniform_(0.5, 2.0)
    model.set_subnet("sp90")
    state = copy.deepcopy(model.state_dict())
    again = sparse_model(levels=(0.0, 0.5, 0.9))
    again.set_subnet("sp90")
    again.load_state_dict(state, strict=True)
    assert again.active_subnet == "sp90" and _conv_norms(again)[0].active_slot == 0
    assert torch.equal(_conv_norms(again)[1].slot_running_var,
                       _conv_norms(model)[1].slot_running_var)
    # a checkpoint of one size's slot (the demo's one size, trained before per-level
    # statistics) fills every level's
    old = sparse_model(levels=(0.0, 0.5, 0.9), sizes=(12,), per_level_bn=False)
    assert _conv_norms(old)[0].slot_running_mean.shape[0] == 1
    assert _conv_norms(old)[0].active_slot == 0
    with torch.no_grad():
        _conv_norms(old)[0].slot_running_mean.normal_()
    again = sparse_model(levels=(0.0, 0.5, 0.9), sizes=(12,))
    again.load_state_dict(old.state_dict(), strict=True)
    slots = _conv_norms(again)[0].slot_running_mean
    assert torch.equal(slots, _conv_norms(old)[0].slot_running_mean.expand_as(slots))


def test_stage_12_re_estimates_each_levels_statistics():
    """per_level_bn: BatchNorm calibration (stage 12) gives every level the average of its
    own masked batch statistics; with per_level_bn: false there is nothing to calibrate."""
    from espnet_supernet.deploy.batch_norm_recalibration import uncalibrated_reason
    from espnet_supernet.train.batch_norm_calibration import calibrate_batch_norm

    model = sparse_model(levels=(0.0, 0.5, 0.9)).eval()
    assert uncalibrated_reason(model) is None
    speech, lens, _, _ = batch()
    calibrate_batch_norm(model, [dict(speech=speech, speech_lengths=lens)])
    slots = _conv_norms(model)[0].slot_running_mean.clone()
    assert not torch.allclose(slots[0], slots[2])  # sp90 and sp0: other activations
    for name, slot in (("sp90", 0), ("sp0", 2)):  # each slot: its level's batch mean
        model.set_subnet(name)
        norm = _conv_norms(model)[0]
        seen = []
        hook = norm.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
        model.train()
        with torch.no_grad(), model.sparse_weights():
            model.encoder(speech, lens)
        model.eval()
        hook.remove()
        assert torch.allclose(slots[slot], seen[0].mean(dim=(0, 2)), atol=1e-4)
    assert uncalibrated_reason(sparse_model(per_level_bn=False)) is not None


def test_a_per_layer_configuration_picks_its_statistics():
    """set_block_levels: a uniform configuration is its level (masks and statistics), a
    mixed one computes each block at its level with the dense level's statistics."""
    model = sparse_model(levels=(0.0, 0.5, 0.9)).eval()
    norms = _conv_norms(model)
    model.set_block_levels({b: 2 for b in model.sparsity.blocks})
    assert model.active_subnet == "sp90" and norms[0].active_slot == 0
    speech, lens, _, _ = batch()
    with torch.no_grad(), model.sparse_weights():
        uniform = model.encoder(speech, lens)[0]
    model.set_subnet("sp90")
    with torch.no_grad(), model.sparse_weights():
        assert torch.equal(model.encoder(speech, lens)[0], uniform)
    mixed = {b: i % 3 for i, b in enumerate(model.sparsity.blocks)}
    model.set_block_levels(mixed)
    assert norms[0].active_slot == 2  # sp0's
    assert model.sparsity.active == [mixed[t.block] for t in model.sparsity.targets]
