"""OrthoSoftmax: rows, penalty, budgets, nested masks, step 1 in the model, report."""

import math

import pytest
import torch
import yaml

from tiny_models import VOCAB, make_model
from espnet_supernet.selection.ortho_softmax import (
    OrthoSoftmaxSelection,
    greedy_order,
    orthogonality_penalty,
    parse_budget,
    rows_for_budget,
)

COMPONENTS = dict(attention_heads=4, ffn_chunks=4, prune_heads=True)
BUDGETS = [0.4, 0.7, 1.0]
NAMES = ["0.4", "0.7", "1.0"]


def ortho_model(granularity="component", criterion="flops", budgets=BUDGETS,
                encoder_conf=None, **conf):
    names = OrthoSoftmaxSelection.subnet_names_from_conf({"budgets": budgets})
    model = make_model(sizes=None, encoder_conf=dict(COMPONENTS, subnet_names=names,
                                                     **(encoder_conf or {})))
    enc = model.encoder
    masks = {n: (enc.subnet_mask(n) if granularity == "component"
                 else enc.layout.modules_of(enc.subnet_mask(n))) for n in names}
    selection = OrthoSoftmaxSelection(masks, budgets=budgets, granularity=granularity,
                                      criterion=criterion, **conf)
    selection.bind_encoder(enc)
    return model, selection


def test_parse_budget():
    assert parse_budget(0.34) == (0.34, False)
    assert parse_budget("10M") == (10e6, True)
    assert parse_budget("1.5G") == (1.5e9, True)
    with pytest.raises(ValueError, match="fraction"):
        parse_budget("ten")


def test_rows_are_a_softmax_with_temperature():
    _, sel = ortho_model()
    with torch.no_grad():
        sel.score_matrix.copy_(torch.randn_like(sel.score_matrix))
    probs = sel.probabilities(temperature=0.5)
    expected = torch.exp(2 * sel.score_matrix) / torch.exp(2 * sel.score_matrix).sum(1,
                                                                                   keepdim=True)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(probs.size(0)))


def test_orthogonality_penalty_on_hand_computed_rows():
    assert float(orthogonality_penalty(torch.eye(3))) == pytest.approx(0.0, abs=1e-5)
    assert float(orthogonality_penalty(torch.full((2, 2), 0.5))) == pytest.approx(
        math.sqrt(0.75))
    rows = torch.tensor([[0.8, 0.2], [0.1, 0.9]])
    # G = [[0.68, 0.26], [0.26, 0.82]]: 0.32^2 + 0.26^2 + 0.18^2
    assert float(orthogonality_penalty(rows)) == pytest.approx(math.sqrt(0.2024), rel=1e-5)


def test_rows_for_budget_picks_the_closest_expected_cost():
    probs, costs = torch.eye(4), torch.tensor([0.1, 0.2, 0.3, 0.4])
    assert rows_for_budget(probs, costs, 0.0, 0.5) == 3  # 0.6 beats 0.3
    assert rows_for_budget(probs, costs, 0.0, 0.35) == 2
    assert rows_for_budget(probs, costs, 0.1, 0.35) == 2  # 0.1 + 0.3 beats 0.1 + 0.6
    soft = torch.full((4, 4), 0.25)  # every row costs the mean 0.25
    assert rows_for_budget(soft, costs, 0.0, 0.5) == 2


def test_greedy_order_resolves_collisions():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    assert greedy_order(probs) == [0, 1, 2]


@pytest.mark.parametrize("granularity", ["component", "layer"])
@pytest.mark.parametrize("criterion", ["params", "flops", {"params": 0.5, "flops": 0.5}])
def test_masks_are_nested_and_close_to_their_budgets(granularity, criterion):
    _, sel = ortho_model(granularity, criterion)
    with torch.no_grad():
        sel.score_matrix.copy_(torch.randn_like(sel.score_matrix) * 3)
    masks = sel.masks()
    assert list(masks) == NAMES
    n = sel.unit_costs.numel()
    assert all(len(m) == n for m in masks.values())
    for small, big in zip(NAMES, NAMES[1:]):
        assert all(b >= s for s, b in zip(masks[small], masks[big]))
    assert masks["1.0"] == [1] * n
    cheapest = float(sel.unit_costs.max())  # one unit changes the cost by at most this
    for name, target in zip(NAMES, BUDGETS):
        assert abs(sel.subnet_cost(masks[name]) - target) <= cheapest / 2 + 1e-6


def test_unreachable_budgets_and_missing_components_are_rejected():
    with pytest.raises(ValueError, match="outside what the supernet can reach: 0.*1.0"):
        ortho_model(budgets=[0.001, 1.0])
    with pytest.raises(ValueError, match="outside what the supernet can reach"):
        ortho_model(criterion="params", budgets=["1K", "1G"])
    with pytest.raises(ValueError, match="ascending"):
        OrthoSoftmaxSelection.subnet_names_from_conf({"budgets": [0.7, 0.4]})
    model = make_model(sizes=None, encoder_conf=dict(subnet_names=NAMES))
    masks = {n: model.encoder.subnet_mask(n) for n in NAMES}
    with pytest.raises(ValueError, match="ffn_chunks"):
        OrthoSoftmaxSelection(masks, budgets=BUDGETS).bind_encoder(model.encoder)


def test_absolute_params_budget():
    _, sel = ortho_model(criterion="params", budgets=["8K", "12K"])
    total = sel.tables["params"].total  # 15.8K
    assert sel.targets == [pytest.approx(8e3 / total), pytest.approx(12e3 / total)]


def _batch(feats):
    xs, lens = feats
    text = torch.randint(1, VOCAB - 1, (2, 5), generator=torch.Generator().manual_seed(1))
    return dict(speech=xs, speech_lengths=lens, text=text, text_lengths=torch.tensor([5, 4]))


def test_step_one_learns_the_scores_then_freezes_nested_subnets(feats, tmp_path):
    model, sel = ortho_model(selection_steps=3)
    model.set_selection(sel, output_dir=str(tmp_path))
    optim = torch.optim.SGD(model.parameters(), lr=0.5)
    before = sel.score_matrix.detach().clone()
    model.train()
    for step in range(4):
        optim.zero_grad()
        loss, stats, _ = model(**_batch(feats))
        loss.backward()
        if step < 3:
            assert {"loss_super", "loss_sub", "loss_selection", "temperature"} <= set(stats)
            assert sel.score_matrix.grad.abs().sum() > 0
        optim.step()
    assert stats["loss_max"] is not None and bool(sel.frozen)
    assert float(sel.temperature) < 1.0
    assert not torch.equal(sel.score_matrix.detach(), before)
    masks = {n: model.encoder.subnet_mask(n) for n in NAMES}
    assert masks == sel.masks()
    report = yaml.safe_load((tmp_path / "selection.yaml").read_text())
    assert report["granularity"] == "component"
    assert set(report["budgets"]) == set(NAMES)
    assert report["sizes"]["0.4"]["flops_fraction"] < report["sizes"]["0.7"]["flops_fraction"]
    assert len(report["unit_order"]) == model.encoder.num_units
    assert all(isinstance(k, str) for k in report["sizes"]["0.4"]["kept"])
    assert (tmp_path / "selection.png").stat().st_size > 1000


@pytest.mark.parametrize("granularity", ["component", "layer"])
def test_a_block_without_macaron_ffn_selects_over_its_own_modules(feats, tmp_path, granularity):
    """macaron_style: false: 3 modules per block (MHSA 4 heads, conv, FFN 4 chunks = 9
    units); step 1 trains and freezes nested subnets over that layout."""
    model, sel = ortho_model(granularity, selection_steps=2,
                             encoder_conf=dict(macaron_style=False))
    enc = model.encoder
    assert enc.layout.kinds == ("mhsa", "conv", "ffn") and enc.num_units == 27
    model.set_selection(sel, output_dir=str(tmp_path))
    optim = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    for _ in range(3):
        optim.zero_grad()
        loss, _, _ = model(**_batch(feats))
        loss.backward()
        optim.step()
    assert bool(sel.frozen)
    masks = {n: enc.subnet_mask(n) for n in NAMES}
    assert all(len(m) == 27 for m in masks.values())
    for small, big in zip(NAMES, NAMES[1:]):
        assert all(b >= s for s, b in zip(masks[small], masks[big]))
    report = yaml.safe_load((tmp_path / "selection.yaml").read_text())
    assert report["module_order"] == ["mhsa", "conv", "ffn"]
    assert all(k.split(".")[1].split("[")[0] in ("mhsa", "conv", "ffn")
               for k in report["sizes"]["0.4"]["kept"])
    assert (tmp_path / "selection.png").stat().st_size > 1000


def test_authors_temperature_decays_per_step_and_floors():
    _, geo = ortho_model(selection_steps=100)
    _, dec = ortho_model(temperature_schedule="step_decay", temperature_decay=0.99)
    assert geo.temperature_at(50) == pytest.approx(0.1)  # sqrt(1 * 0.01): half of step 1
    assert dec.temperature_at(0) == 1.0
    assert dec.temperature_at(50) == pytest.approx(0.99 ** 50)
    assert dec.temperature_at(10_000) == 0.01  # floored at temperature_end
    with pytest.raises(ValueError, match="temperature_schedule"):
        ortho_model(temperature_schedule="linear")


def test_authors_subnet_weight_is_one_minus_exp_of_the_frame_loss(feats):
    """subnet_weighting: exp_loss: loss = L_super + (1 - exp(-L_sub / frames)) L_sub."""
    model, sel = ortho_model(selection_steps=3)
    model.subnet_weighting = "exp_loss"
    model.set_selection(sel)
    model.train()
    loss, stats, _ = model(**_batch(feats))
    frames = model.encoder.forward_frontend(*feats).masks.sum()
    weight = 1 - math.exp(-float(stats["loss_sub"]) * 2 / float(frames))  # batch of 2
    assert float(stats["weight_sub"]) == pytest.approx(weight, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(
        float(stats["loss_super"]) + weight * float(stats["loss_sub"])
        + float(stats["loss_selection"]), rel=1e-5)
    loss.backward()  # the weight is not detached: d/dL (1 - e^(-L/F)) L reaches the scores
    assert sel.score_matrix.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="subnet_weighting"):
        make_model(subnet_weighting="focal")


def test_the_papers_smallest_flops_budget_needs_the_light_front_end():
    """0.337 of the FLOPs: out of reach with conv2d on 80 bins (half the tiny encoder's
    FLOPs), selected and trained with vgg4."""
    budgets = [0.337, 0.578, 1.0]
    names = OrthoSoftmaxSelection.subnet_names_from_conf({"budgets": budgets})

    def build(**frontend):
        model = make_model(sizes=None, encoder_conf=dict(
            COMPONENTS, subnet_names=names, input_size=80, **frontend))
        masks = {n: model.encoder.subnet_mask(n) for n in names}
        sel = OrthoSoftmaxSelection(masks, budgets=budgets, selection_steps=2)
        sel.bind_encoder(model.encoder)
        return model, sel

    with pytest.raises(ValueError, match="outside what the supernet can reach"):
        build()
    torch.manual_seed(0)
    feats = torch.randn(2, 60, 80), torch.tensor([60, 45])

    def train(model, sel):  # 2 steps of step 1, then the sandwich rule on the frozen masks
        model.set_selection(sel)
        optim = torch.optim.SGD(model.parameters(), lr=0.1)
        model.train()
        for _ in range(3):
            optim.zero_grad()
            loss, stats, _ = model(**_batch(feats))
            loss.backward()
            optim.step()
        assert bool(sel.frozen) and torch.isfinite(stats["loss_min"])
        return sel.tables["flops"], model.encoder.subnet_mask("0.337")

    table, mask = train(*build(input_layer="vgg4", vgg_channels=[1, 2, 2, 1]))
    assert table.fixed / table.total < 0.337
    assert table.subnet(mask) / table.total == pytest.approx(0.337, abs=0.03)
    # or with ESPnet's conv2d at 4 of its 16 channels for that size: the budget counts
    # the narrow front end, and the size trains at it
    model, sel = build(subnet_frontend_channels={"0.337": 4})
    assert sel.fixed_costs[0] < 0.337 < sel.fixed_costs[1] == sel.fixed_costs[2]
    table, mask = train(model, sel)
    assert table.subnet(mask, 4) / table.total == pytest.approx(0.337, abs=0.03)
    assert table.subnet(mask) / table.total > 0.337 + 0.1  # the full front end: far over
    assert sel.report_fields()["budgets"]["0.337"]["achieved"] == pytest.approx(0.337, abs=0.03)
