"""The scan RNN-T loss equals torchaudio's kernel and a brute-force path sum."""

import itertools
import math
import warnings

import pytest
import torch

from espnet_supernet.train.rnnt_loss import RNNTLoss, rnnt_loss_scan


def brute_force_nll(log_probs, labels, blank=0):
    """-log of the sum over every alignment of T frames and U labels (T blanks)."""
    T, _, _ = log_probs.shape
    U = len(labels)
    total = []
    # an alignment: at each frame, how many labels are emitted before its blank
    for counts in itertools.product(range(U + 1), repeat=T):
        if sum(counts) != U:
            continue
        lp, u = 0.0, 0
        for t, c in enumerate(counts):
            for _ in range(c):
                lp += log_probs[t, u, labels[u]].item()
                u += 1
            lp += log_probs[t, u, blank].item()
        total.append(lp)
    return -math.log(sum(math.exp(x) for x in total))


def test_matches_brute_force_on_a_tiny_lattice():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 3, 4)
    loss = rnnt_loss_scan(logits, torch.tensor([[2, 1]]), torch.tensor([3]), torch.tensor([2]))
    expected = brute_force_nll(logits[0].log_softmax(-1), [2, 1])
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_matches_torchaudio_values_and_gradients_with_padding():
    torchaudio = pytest.importorskip("torchaudio")
    torch.manual_seed(0)
    B, T, U, V = 4, 30, 9, 7
    logits = torch.randn(B, T, U + 1, V, requires_grad=True)
    t_len, u_len = torch.tensor([30, 25, 21, 12]), torch.tensor([9, 7, 9, 0])
    targets = torch.randint(1, V, (B, U))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torchaudio.functional.rnnt_loss(logits, targets.int(), t_len.int(),
                                              u_len.int(), blank=0, reduction="none")
    out = rnnt_loss_scan(logits, targets, t_len, u_len)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    grad_ref, = torch.autograd.grad(ref.sum(), logits)
    grad, = torch.autograd.grad(out.sum(), logits)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-4)
    # the mean over the batch, as torchaudio's reduction="mean"
    mean = RNNTLoss(0)(logits, targets, t_len, u_len)
    assert mean.item() == pytest.approx(ref.mean().item(), rel=1e-5)


def test_unknown_implementation_is_rejected():
    with pytest.raises(ValueError, match="scan"):
        RNNTLoss(0, "warp")


@pytest.mark.parametrize("implementation", ["scan", "torchaudio"])
def test_log_probability_input_gives_the_same_loss_and_gradient(implementation):
    """normalized=True (log-softmax done by the caller, shared with the KD) changes
    nothing: same value and the same gradient with respect to the logits."""
    pytest.importorskip("torchaudio")
    torch.manual_seed(1)
    B, T, U, V = 3, 12, 5, 6
    logits = torch.randn(B, T, U + 1, V, requires_grad=True)
    t_len, u_len = torch.tensor([12, 9, 5]), torch.tensor([5, 3, 4])
    targets = torch.randint(1, V, (B, U))
    loss = RNNTLoss(0, implementation)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = loss(logits, targets, t_len, u_len)
        out = loss(logits.log_softmax(-1), targets, t_len, u_len, normalized=True)
    grad_ref, = torch.autograd.grad(ref, logits)
    grad, = torch.autograd.grad(out, logits)
    assert out.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(grad, grad_ref, rtol=0, atol=1e-5)
