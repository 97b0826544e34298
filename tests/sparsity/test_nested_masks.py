"""Magnitude masks nested across sparsity levels, and the cubic warm-up."""

import pytest
import torch

from espnet_supernet.sparsity.nested_masks import (
    check_levels,
    global_keep_levels,
    keep_levels,
    pruned_count,
)
from espnet_supernet.sparsity.schedule import cubic_sparsity

LEVELS = [0.0, 0.3, 0.5, 0.7, 0.85]


def test_each_level_prunes_round_s_n_smallest_magnitudes():
    torch.manual_seed(0)
    w = torch.randn(37, 11)  # 407 weights: 0.85 * 407 = 345.95 -> 346
    keep = keep_levels(w.abs(), LEVELS)
    assert keep.dtype == torch.uint8 and keep.shape == w.shape
    for i, s in enumerate(LEVELS):
        mask = keep > i
        assert int((~mask).sum()) == round(s * w.numel() + 1e-9) == pruned_count(s, 407)
        if 0 < s:
            assert w.abs()[mask].min() >= w.abs()[~mask].max()  # the largest survive
    assert [pruned_count(s, 407) for s in LEVELS] == [0, 122, 204, 285, 346]


def test_masks_are_nested_and_ties_deterministic():
    w = torch.tensor([[0.5, -0.5, 0.5, 0.1], [0.5, 0.2, -0.5, 0.5]])
    keep = keep_levels(w.abs(), [0.0, 0.25, 0.5])
    masks = [keep > i for i in range(3)]
    for coarse, fine in zip(masks, masks[1:]):
        assert bool((fine <= coarse).all())  # a sparser mask is a subset
    # 0.5 prunes 4: 0.1, 0.2, then the first two of the tied 0.5s in row-major order
    assert masks[2].tolist() == [[False, False, True, False], [True, False, True, True]]


def test_global_scope_ranks_all_tensors_together():
    small, large = torch.full((10,), 0.1), torch.arange(1.0, 11.0)
    keeps = global_keep_levels([small, large], [0.0, 0.5])
    assert not bool((keeps[0] > 1).any())  # all 10 small weights go at 50% of 20
    assert bool((keeps[1] > 1).all())


def test_bad_levels_rejected():
    with pytest.raises(ValueError, match="ascending"):
        check_levels([0.5, 0.3])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        check_levels([0.0, 1.0])


def test_cubic_warmup_values():
    # s_t = s_f (1 - (1 - (t - t0) / n)^3), Zhu & Gupta with s_i = 0
    assert cubic_sparsity(0, 0.8, begin_step=10, ramp_steps=100) == 0.0
    assert cubic_sparsity(10, 0.8, begin_step=10, ramp_steps=100) == 0.0
    assert cubic_sparsity(60, 0.8, begin_step=10, ramp_steps=100) == pytest.approx(0.7)
    assert cubic_sparsity(35, 0.8, begin_step=10, ramp_steps=100) == \
        pytest.approx(0.8 * (1 - 0.75 ** 3))
    assert cubic_sparsity(110, 0.8, begin_step=10, ramp_steps=100) == 0.8
    assert cubic_sparsity(5, 0.8) == 0.8  # no warm-up
