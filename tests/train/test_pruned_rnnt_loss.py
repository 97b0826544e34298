"""Pruned RNN-T loss (train/pruned_rnnt_loss.py) against the full loss."""

import pytest
import torch

from espnet_supernet.train.pruned_rnnt_loss import (
    prune_ranges,
    pruned_lattice,
    pruned_rnnt_loss,
    simple_lattice,
)
from espnet_supernet.train.rnnt_loss import rnnt_loss_scan

B, T, U, V, J = 3, 12, 5, 7, 8


def inputs(seed=0):
    gen = torch.Generator().manual_seed(seed)
    am = torch.randn(B, T, V, generator=gen, requires_grad=True)
    lm = torch.randn(B, U + 1, V, generator=gen, requires_grad=True)
    enc = torch.randn(B, T, J, generator=gen, requires_grad=True)
    dec = torch.randn(B, U + 1, J, generator=gen, requires_grad=True)
    targets = torch.randint(1, V, (B, U), generator=gen)
    t_len, u_len = torch.tensor([12, 10, 7]), torch.tensor([5, 3, 4])
    return am, lm, enc, dec, targets, t_len, u_len


torch.manual_seed(0)
OUT = torch.nn.Linear(J, V)


def joint(hidden):
    return OUT(torch.tanh(hidden))


def test_simple_lattice_is_the_full_loss_of_the_sum_joint():
    am, lm, _, _, targets, t_len, u_len = inputs()
    blank, label = simple_lattice(am, lm, targets)
    from espnet_supernet.train.rnnt_loss import lattice_nll

    full = rnnt_loss_scan(am[:, :, None] + lm[:, None], targets, t_len, u_len)
    assert torch.allclose(lattice_nll(blank, label, t_len, u_len), full, rtol=1e-5)


def test_windows_covering_the_lattice_give_the_full_loss_and_gradient():
    am, lm, enc, dec, targets, t_len, u_len = inputs()
    simple, pruned = pruned_rnnt_loss(am, lm, joint, enc, dec, targets, t_len, u_len,
                                      s_range=U + 1)
    full = rnnt_loss_scan(joint(enc[:, :, None] + dec[:, None]), targets, t_len, u_len)
    assert torch.allclose(pruned, full, rtol=1e-5)
    g_pruned = torch.autograd.grad(pruned.sum(), (enc, dec), retain_graph=True)
    g_full = torch.autograd.grad(full.sum(), (enc, dec))
    for a, b in zip(g_pruned, g_full):
        assert torch.allclose(a, b, atol=1e-5)
    (simple.sum() + pruned.sum()).backward()
    assert all(torch.isfinite(x.grad).all() for x in (am, lm, enc, dec))


@pytest.mark.parametrize("s_range", [2, 3, 4])
def test_narrow_windows_are_connected_and_lose_only_paths(s_range):
    am, lm, enc, dec, targets, t_len, u_len = inputs(1)
    blank, label = simple_lattice(am, lm, targets)
    start = prune_ranges(blank, label, t_len, u_len, s_range)
    assert (start[:, 0] == 0).all()
    for b in range(B):
        s = start[b, : t_len[b]]
        assert (s[1:] >= s[:-1]).all() and (s[1:] <= s[:-1] + s_range - 1).all()
        assert s[-1] + s_range - 1 >= u_len[b]  # the last frame's window holds U
    _, pruned = pruned_rnnt_loss(am, lm, joint, enc, dec, targets, t_len, u_len, s_range)
    full = rnnt_loss_scan(joint(enc[:, :, None] + dec[:, None]), targets, t_len, u_len)
    # fewer paths: a higher NLL, and finite
    assert (pruned >= full - 1e-5).all() and torch.isfinite(pruned).all()
    blank_lp, label_lp = pruned_lattice(joint, enc, dec, targets, start, s_range)
    assert ((blank_lp > -999).sum(-1) == min(s_range, U + 1)).all()  # S nodes per frame


def test_a_window_narrower_than_two_is_refused():
    am, lm, _, _, targets, t_len, u_len = inputs()
    blank, label = simple_lattice(am, lm, targets)
    with pytest.raises(ValueError, match="s_range must be >= 2"):
        prune_ranges(blank, label, t_len, u_len, 1)


def test_a_todm_sandwich_step_trains_with_the_pruned_loss(tmp_path):
    from tiny_models import make_transducer, transducer_batch

    _, model = make_transducer(tmp_path, rnnt_loss="pruned", prune_range=3, kd_weight=1.0)
    model.train()
    loss, stats, _ = model(**transducer_batch())
    loss.backward()
    assert torch.isfinite(loss)
    assert any(k.startswith("kd_") and float(v) >= 0 for k, v in stats.items())
    for layer in (model.simple_am_proj, model.simple_lm_proj, model.joint_network.lin_out):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    # windows covering every label position: the pruned part is the full RNN-T loss
    _, wide = make_transducer(tmp_path, rnnt_loss="pruned", prune_range=50,
                              simple_loss_scale=0.0)
    wide.eval()
    batch = transducer_batch()
    with torch.no_grad():
        front, dec_out, dec_proj, target, u_len = wide._shared_inputs(
            batch["speech"], batch["speech_lengths"], batch["text"], batch["text_lengths"])
        enc_out, enc_lens = wide.encoder.forward_subnet(front)
        pruned = wide._pruned_loss(enc_out, enc_lens, dec_out, dec_proj, target, u_len)[0]
        full = wide.criterion_transducer(wide._joint(enc_out, dec_proj), target, enc_lens, u_len)
    assert float(pruned) == pytest.approx(float(full), rel=1e-5)
    with pytest.raises(ValueError, match="prune_range must be >= 2"):
        make_transducer(tmp_path, rnnt_loss="pruned", prune_range=1)
