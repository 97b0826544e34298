"""Learned selection inside SupernetASRModel: step 1, freezing, report, step 2."""

import pytest
import torch
import yaml

from tiny_models import VOCAB, make_model
from espnet_supernet.selection.iterative_zero_out import IterativeZeroOutSelection
from espnet_supernet.selection.simple_topk import SimpleTopKSelection

SIZES = (4, 8, 12)  # M = 12 (3 blocks)


def _batch(feats):
    xs, lens = feats
    text = torch.randint(1, VOCAB - 1, (2, 5), generator=torch.Generator().manual_seed(1))
    return dict(speech=xs, speech_lengths=lens, text=text, text_lengths=torch.tensor([5, 4]))


def _train(model, feats, steps):
    """``steps`` SGD updates; the last step's gradients stay in place (None where the
    loss did not reach a parameter)."""
    optim = torch.optim.SGD(model.parameters(), lr=0.05)  # lr 0.5 diverges to NaN
    model.train()
    stats = []
    for _ in range(steps):
        optim.zero_grad()
        loss, st, _ = model(**_batch(feats))
        assert torch.isfinite(loss), f"training diverged: loss {loss}"
        loss.backward()
        optim.step()
        stats.append(st)
    return stats


@pytest.mark.parametrize("method", [SimpleTopKSelection, IterativeZeroOutSelection])
def test_selection_learns_freezes_reports_and_decodes_learned_masks(method, feats, tmp_path):
    model = make_model(sizes=SIZES, stochastic_depth_rate=0.3)
    masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
    model.set_selection(method(masks, selection_steps=4), output_dir=str(tmp_path))
    before = model.selection.score.detach().clone()
    stats = _train(model, feats, 4)
    assert {"loss_super", "loss_sub", "loss_selection"} <= set(stats[0]) or (
        method is SimpleTopKSelection and {"loss_super", "loss_sub"} <= set(stats[0]))
    assert not bool(model.selection.frozen)
    learned_scores = model.selection.score.detach()
    assert torch.isfinite(learned_scores).all() and not torch.equal(learned_scores, before)

    stats = _train(model, feats, 1)  # step 4: the masks freeze, then the sandwich
    assert bool(model.selection.frozen)
    assert {"loss_max", "loss_min", "loss_rand0"} <= set(stats[0])
    learned = model.selection.masks()
    assert [sum(learned[n]) for n in model.subnet_names] == list(SIZES)
    for small, big in zip(model.subnet_names, model.subnet_names[1:]):  # nested
        assert all(b >= s for s, b in zip(learned[small], learned[big]))
    assert {n: model.encoder.subnet_mask(n) for n in model.subnet_names} == learned

    report = yaml.safe_load((tmp_path / "selection.yaml").read_text())
    assert report["sizes"]["4"]["mask"] == learned["4"]
    assert report["sizes"]["4"]["encoder_params"] < report["sizes"]["12"]["encoder_params"]
    assert len(report["scores"]) == 12
    assert (tmp_path / "selection.png").stat().st_size > 1000

    # step 2: the scores leave the graph (no gradient, so no optimizer, Adam's momentum
    # included, moves them) and nothing else writes them: bit-identical, masks unchanged
    score = model.selection.score
    frozen_scores = score.detach().clone()
    for _ in range(2):
        _train(model, feats, 1)
        assert score.grad is None, "a step-2 loss depends on the frozen scores"
        assert torch.equal(score.detach(), frozen_scores), "the frozen scores moved"
        assert model.selection.masks() == learned
    model.eval()
    model.set_subnet("4")
    assert model.encoder.active_mask == learned["4"]


def test_masks_survive_a_state_dict_round_trip(feats):
    model = make_model(sizes=SIZES)
    masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
    model.set_selection(SimpleTopKSelection(masks, selection_steps=2))
    _train(model, feats, 3)
    fresh = make_model(sizes=SIZES)
    fresh.set_selection(SimpleTopKSelection(masks, selection_steps=2))
    fresh.load_state_dict(model.state_dict())
    assert bool(fresh.selection.frozen) and int(fresh.sandwich_step) == 3
    for name in model.subnet_names:
        assert fresh.encoder.subnet_mask(name) == model.encoder.subnet_mask(name)


def test_stochastic_depth_drops_only_modules_outside_the_smallest(feats):
    model = make_model(sizes=SIZES, stochastic_depth_rate=0.5)
    small = model.encoder.subnet_mask("4")
    dropped = set()
    for step in range(40):
        gates = model.stochastic_depth_gates(step)
        assert all(g == 1 for g, keep in zip(gates, small) if keep)
        assert all(g in (0, 2.0) for g, keep in zip(gates, small) if not keep)
        dropped |= {j for j, g in enumerate(gates) if g == 0}
    assert dropped == {j for j, keep in enumerate(small) if not keep}
    assert make_model(sizes=SIZES).stochastic_depth_gates(0) is None


def test_row_stochastic_depth_drops_modules_per_utterance(feats):
    """The authors' per-utterance mode: a (B, 1, 1) gate of 0 or 1 / (1 - p) per row;
    each row of the output is the row of the batch-mode pass with that row's choice."""
    model = make_model(sizes=SIZES, stochastic_depth_rate=0.5, stochastic_depth_mode="row")
    small = model.encoder.subnet_mask("4")
    mixed = None
    for step in range(20):
        gates = model.stochastic_depth_gates(step, batch_size=6)
        assert all(g == 1 for g, keep in zip(gates, small) if keep)
        for j, (g, keep) in enumerate(zip(gates, small)):
            if keep or (not isinstance(g, torch.Tensor) and g == 0):
                continue
            assert g.shape == (6, 1, 1) and set(g.flatten().tolist()) <= {0.0, 2.0}
            if mixed is None and set(g.flatten().tolist()) == {0.0, 2.0}:
                mixed = j
    assert mixed is not None  # some module is dropped for some rows, kept for others
    encoder = model.encoder.eval()
    front = encoder.forward_frontend(*feats)
    largest = encoder.gates(encoder.subnet_mask("12"))
    row_gate = torch.tensor([0.0, 2.0]).view(2, 1, 1)
    outs = {}
    for name, gate in (("row", row_gate), ("drop", 0), ("keep", 2.0)):
        gates = list(largest)
        gates[mixed] = gate
        outs[name] = encoder.forward_subnet(front, gates)[0]
    assert torch.allclose(outs["row"][0], outs["drop"][0], atol=1e-5)
    assert torch.allclose(outs["row"][1], outs["keep"][1], atol=1e-5)
    assert not torch.allclose(outs["drop"][1], outs["keep"][1], atol=1e-3)
    with pytest.raises(ValueError, match="stochastic_depth_mode"):
        make_model(sizes=SIZES, stochastic_depth_mode="layer")


def test_stat_keys_of_step_one_stay_as_none_after_the_switch(feats):
    model = make_model(sizes=SIZES)
    masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
    model.set_selection(SimpleTopKSelection(masks, selection_steps=1))
    first, second = _train(model, feats, 2)  # step 0: selection, step 1: sandwich
    assert "loss_super" in first and set(first) <= set(second)
    assert second["loss_super"] is None and torch.isfinite(second["loss_max"])  # not trained
