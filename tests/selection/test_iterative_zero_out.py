"""Iterative-Zero-Out: sparsity loss, zeroing per iteration, nested ranking."""

import pytest
import torch

from espnet_supernet.selection.iterative_zero_out import (
    IterativeZeroOutSelection,
    sparsity_loss,
)

MASKS = {"4": [1, 0] * 4, "6": [1, 1, 1, 0] * 2, "8": [1] * 8}  # M = 8


def test_sparsity_loss_hand_computed():
    scores = torch.tensor([0.0, 0.0, 10.0, -10.0])  # gates 0.5, 0.5, ~1, ~0
    # closed fraction = (4 - 2) / 4 = 0.5; target 1 / 4 -> |0.5 - 0.25| = 0.25
    assert sparsity_loss(scores, 1).item() == pytest.approx(0.25, abs=1e-4)
    assert sparsity_loss(scores, 2).item() == pytest.approx(0.0, abs=1e-4)


def test_default_removals_follow_sizes_and_iterations_split_step1():
    sel = IterativeZeroOutSelection(MASKS, selection_steps=20)
    assert sel.num_removed == [2, 4]
    assert sel.iteration_length() == 10
    assert [sel.iteration(t) for t in (0, 9, 10, 19)] == [1, 1, 2, 2]


def test_after_each_iteration_exactly_n_lowest_are_zeroed():
    sel = IterativeZeroOutSelection(MASKS, selection_steps=20)
    with torch.no_grad():
        sel.score.copy_(torch.tensor([9.0, 3.0, 8.0, 1.0, 7.0, 6.0, 2.0, 5.0]))
    for step in range(10):
        sel.after_step(step)
    assert (sel.score == -5).nonzero().flatten().tolist() == [3, 6]  # the 2 lowest
    with torch.no_grad():
        sel.score[[0, 2, 4, 5, 7, 1]] = torch.tensor([9.0, 8.0, 4.0, 6.0, 5.0, 3.0])
    for step in range(10, 20):
        sel.after_step(step)
    assert sorted((sel.score == -5).nonzero().flatten().tolist()) == [1, 3, 4, 6]
    masks = sel.masks()
    assert masks["4"] == [1, 0, 1, 0, 0, 1, 0, 1]
    # size 6 keeps the 4 survivors plus the 2 removed last (iteration 2: modules 1 and 4)
    assert masks["6"] == [1, 1, 1, 0, 1, 1, 0, 1]
    assert masks["8"] == [1] * 8


def test_gates_are_sigmoid_and_regularizer_weighted():
    sel = IterativeZeroOutSelection(MASKS, selection_steps=20, sparsity_weight=5.0)
    gates, _ = sel.subnet_gates(0)
    assert len(gates) == 8 and all(g.item() == pytest.approx(1.0, abs=1e-4) for g in gates)
    # all gates open, target 2 of 8 removed: 5 * |0 - 0.25|
    assert sel.regularizer(0).item() == pytest.approx(1.25, abs=1e-3)
    sel.regularizer(0).backward()
    assert sel.score.grad.abs().sum() > 0


def test_num_removed_must_increase_within_range():
    with pytest.raises(ValueError, match="num_removed"):
        IterativeZeroOutSelection(MASKS, num_removed=[4, 2])
    with pytest.raises(ValueError, match="num_removed"):
        IterativeZeroOutSelection(MASKS, num_removed=[8])
