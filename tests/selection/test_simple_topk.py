"""Simple-Top-k: relaxed k-hot, straight-through top-k, k annealing, score learning."""

import pytest
import torch

from espnet_supernet.selection.simple_topk import (
    SimpleTopKSelection,
    annealed_k,
    relaxed_khot,
    straight_through_topk,
)

MASKS = {"4": [1, 0] * 4, "8": [1] * 8}  # M = 8 (2 blocks), sizes 4 and 8


@pytest.mark.parametrize("k", [1, 3, 5])
def test_relaxed_khot_sums_to_k_and_keeps_the_order(k):
    scores = torch.randn(8)
    khot = relaxed_khot(scores, k, temperature=0.5)
    assert khot.sum().item() == pytest.approx(k, abs=1e-5)
    assert (khot >= 0).all()
    assert khot.argsort().tolist() == scores.argsort().tolist()


def test_relaxed_khot_approaches_hard_topk_as_scores_separate():
    base = torch.tensor([3.0, -1.0, 2.0, 0.0, 1.0, -2.0])
    hard = torch.tensor([1.0, 0, 1, 0, 1, 0])  # top-3
    errors = [(relaxed_khot(base * scale, 3, temperature=0.5) - hard).abs().max().item()
              for scale in (1, 4, 16)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-3
    # tau = 1 (the formula without temperature): the top element keeps ~0.5 extra mass
    assert relaxed_khot(base * 16, 3, temperature=1.0)[0].item() > 1.4


def test_straight_through_forward_is_hard_and_gradient_reaches_scores():
    scores = torch.tensor([0.5, -0.2, 0.9, 0.1], requires_grad=True)
    z = straight_through_topk(relaxed_khot(scores, 2), 2)
    assert z.detach().tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0], abs=1e-6)
    (z * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert scores.grad is not None and scores.grad.abs().sum() > 0


def test_annealing_schedule_values():
    # k(t) = max(M - r - floor(t / N) * r, k_min), M = 48, r = 2, N = 10, k_min = 16
    values = [annealed_k(t, 48, 16, 2, 10) for t in (0, 9, 10, 25, 150, 1000)]
    assert values == [46, 46, 44, 42, 16, 16]


def test_default_interval_reaches_k_min_at_anneal_end():
    sel = SimpleTopKSelection(MASKS, selection_steps=100, anneal_end=0.8)
    # M = 8, r = 1, k_min = 4: 3 decrements (7, 6, 5, 4) within 80 steps
    assert sel.interval() == 26
    assert [sel.k_at(t) for t in (0, 25, 26, 78, 99)] == [7, 7, 6, 4, 4]


def test_subnet_gates_skip_masked_modules_and_carry_gradient():
    sel = SimpleTopKSelection(MASKS, selection_steps=10, anneal_interval=1)
    gates, stats = sel.subnet_gates(2)  # k = 8 - 1 - 2 = 5
    assert stats["selection_k"].item() == 5
    kept = [g for g in gates if isinstance(g, torch.Tensor)]
    assert len(kept) == 5 and gates.count(0) == 3
    sum(kept).backward()
    assert sel.score.grad.abs().sum() > 0


def test_masks_are_top_k_of_scores_and_nested():
    sel = SimpleTopKSelection({"2": [1, 1, 0, 0] + [0] * 4, "5": [1] * 5 + [0] * 3,
                               "8": [1] * 8}, selection_steps=1)
    with torch.no_grad():
        sel.score.copy_(torch.tensor([0.1, 0.9, -0.3, 0.5, 0.0, 0.7, -1.0, 0.2]))
    masks = sel.masks()
    assert masks["2"] == [0, 1, 0, 0, 0, 1, 0, 0]
    assert masks["5"] == [1, 1, 0, 1, 0, 1, 0, 1]
    assert masks["8"] == [1] * 8


def test_bad_k_min_and_step_options_raise():
    with pytest.raises(ValueError, match="k_min"):
        SimpleTopKSelection(MASKS, k_min=8)
    with pytest.raises(ValueError, match="at most one"):
        SimpleTopKSelection(MASKS, selection_steps=5, selection_epochs=2)
