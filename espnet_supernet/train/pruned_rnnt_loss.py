"""Pruned RNN-T loss (Kuang et al., "Pruned RNN-T for fast, memory-efficient ASR
training", Interspeech 2022), written here in PyTorch.

The full RNN-T loss needs the joint network's (B, T, U + 1, V) output; with a BPE-5000
vocabulary that does not fit in GPU memory at a paper-sized batch. The pruned loss:

1. A "simple" joint, ``am(t, v) + lm(u, v)`` (linear projections of the encoder and the
   prediction network to the vocabulary), whose normaliser over v is a (T, V) x (V, U+1)
   matrix product, gives a cheap RNN-T lattice: :func:`simple_lattice`. Its loss is
   trained too (``simple_loss_scale``).
2. The simple lattice's transition posteriors (the gradient of its log-likelihood) say
   which label positions u each frame t occupies; :func:`prune_ranges` picks per frame a
   window of ``s_range`` positions [s_t, s_t + s_range) holding the most occupancy, with
   s_0 = 0, s_t non-decreasing, consecutive windows connected (s_{t+1} <= s_t + s_range -
   1) and the last frame's window reaching U.
3. The full joint runs only on those windows, (B, T, s_range, V):
   :func:`pruned_lattice`; transitions outside them get ``PRUNED`` log-probability (a
   finite -1000 instead of -inf, so that the closed-form recursion of
   ``rnnt_loss.lattice_nll`` stays finite; exp(-1000) is 0 in float64). With ``s_range``
   >= U + 1 nothing is pruned and the loss equals the full one.
"""

from typing import Callable, Tuple

import torch

from espnet_supernet.train.rnnt_loss import lattice_nll

PRUNED = -1000.0


def simple_lattice(am: torch.Tensor, lm: torch.Tensor, targets: torch.Tensor,
                   blank: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Transition log-probabilities of the simple joint ``am(t) + lm(u)``.

    Args:
        am: encoder projected to the vocabulary (B, T, V).
        lm: prediction network projected to the vocabulary (B, U + 1, V).
        targets: labels (B, U).

    Returns:
        ``blank_lp`` (B, T, U + 1) and ``label_lp`` (B, T, U), normalised over v exactly:
        ``log sum_v exp(am(t, v) + lm(u, v))`` as a matrix product of exponentials.
    """
    am, lm = am.float(), lm.float()
    am_max, lm_max = am.max(-1, keepdim=True).values, lm.max(-1, keepdim=True).values
    norm = torch.matmul((am - am_max).exp(), (lm - lm_max).exp().transpose(1, 2))
    norm = norm.clamp(min=1e-30).log() + am_max + lm_max.transpose(1, 2)  # (B, T, U + 1)
    blank_lp = am[..., blank, None] + lm[..., blank][:, None, :] - norm
    u = targets.size(1)
    labels = targets.long().clamp(0, am.size(-1) - 1)
    am_y = am.gather(-1, labels[:, None, :].expand(-1, am.size(1), -1))  # (B, T, U)
    lm_y = lm[:, :u].gather(-1, labels[..., None]).squeeze(-1)  # (B, U)
    return blank_lp, am_y + lm_y[:, None, :] - norm[:, :, :u]


def prune_ranges(blank_lp: torch.Tensor, label_lp: torch.Tensor, logit_lengths: torch.Tensor,
                 target_lengths: torch.Tensor, s_range: int) -> torch.Tensor:
    """Window starts (B, T) of the pruned lattice from the simple lattice's occupancy
    (see the module docstring); no gradient."""
    if s_range < 2:
        raise ValueError(f"s_range must be >= 2 (a frame can emit labels), got {s_range}")
    batch, frames, nodes = blank_lp.shape
    with torch.enable_grad():
        b = blank_lp.detach().double().requires_grad_(True)
        lab = label_lp.detach().double().requires_grad_(True)
        nll = lattice_nll(b, lab, logit_lengths, target_lengths).sum()
        grad_b, grad_l = torch.autograd.grad(nll, (b, lab))
    occupancy = -grad_b  # posterior of leaving (t, u) by blank ...
    occupancy[..., :-1] -= grad_l  # ... or by label y_{u+1}
    width = min(s_range, nodes)
    cumulative = torch.cat([occupancy.new_zeros(batch, frames, 1), occupancy.cumsum(-1)], -1)
    windows = cumulative[..., width:] - cumulative[..., :-width]  # (B, T, nodes - width + 1)
    start = windows.argmax(-1)
    top = (target_lengths.long().to(start.device) + 1 - width).clamp(min=0)  # window has U
    start = torch.minimum(start, top[:, None])
    start[:, 0] = 0
    for t in range(1, frames):  # non-decreasing and connected
        start[:, t] = torch.maximum(start[:, t], start[:, t - 1]).minimum(
            start[:, t - 1] + width - 1)
    last = logit_lengths.long().to(start.device) - 1
    for t in range(frames - 1, 0, -1):  # back from the last frame, whose window holds U
        lower = top if t == frames - 1 else torch.where(
            t >= last, top, start[:, t + 1] - (width - 1))
        start[:, t] = torch.maximum(start[:, t], lower)
    return start  # s_0 = 0 (a lattice too short for its labels stays unreachable)


def window_log_probs(joint: Callable[[torch.Tensor], torch.Tensor], enc_proj: torch.Tensor,
                     dec_proj: torch.Tensor, start: torch.Tensor, s_range: int) -> torch.Tensor:
    """The full joint's log-probabilities (B, T, S, V) on the windows only.

    Args:
        joint: hidden (..., J) -> logits (..., V) (the joint network after the projections).
        enc_proj: projected encoder output (B, T, J).
        dec_proj: projected prediction-network output (B, U + 1, J).
        start: window starts (B, T) (:func:`prune_ranges`).
        s_range: window width S (at most U + 1 is used).
    """
    batch, frames, _ = enc_proj.shape
    width = min(s_range, dec_proj.size(1))
    index = start[..., None] + torch.arange(width, device=start.device)  # (B, T, S)
    dec = dec_proj.gather(1, index.reshape(batch, -1, 1).expand(-1, -1, dec_proj.size(-1)))
    hidden = enc_proj[:, :, None, :] + dec.view(batch, frames, width, -1)
    return joint(hidden).float().log_softmax(-1)


def window_transitions(log_probs: torch.Tensor, start: torch.Tensor, targets: torch.Tensor,
                       nodes: int, blank: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """``blank_lp`` (B, T, U + 1) and ``label_lp`` (B, T, U) of the window log-probabilities
    (B, T, S, V) starting at ``start`` (B, T), ``PRUNED`` outside the windows."""
    batch, frames, width, _ = log_probs.shape
    index = start[..., None] + torch.arange(width, device=start.device)
    u = targets.size(1)
    labels = targets.long().gather(1, index.clamp(max=max(u - 1, 0)).reshape(batch, -1))
    label_w = log_probs.gather(-1, labels.view(batch, frames, width, 1)).squeeze(-1)
    full = log_probs.new_full((batch, frames, nodes), PRUNED)
    return (full.scatter(2, index, log_probs[..., blank]),
            full.scatter(2, index, label_w)[..., :u])


def pruned_lattice(joint: Callable[[torch.Tensor], torch.Tensor], enc_proj: torch.Tensor,
                   dec_proj: torch.Tensor, targets: torch.Tensor, start: torch.Tensor,
                   s_range: int, blank: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`window_transitions` of :func:`window_log_probs`: the pruned lattice."""
    log_probs = window_log_probs(joint, enc_proj, dec_proj, start, s_range)
    return window_transitions(log_probs, start, targets, dec_proj.size(1), blank)


def pruned_rnnt_loss(am: torch.Tensor, lm: torch.Tensor,
                     joint: Callable[[torch.Tensor], torch.Tensor], enc_proj: torch.Tensor,
                     dec_proj: torch.Tensor, targets: torch.Tensor,
                     logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
                     s_range: int = 5, blank: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """(simple loss, pruned loss), each (B,) negative log-likelihoods (see the module
    docstring); the caller weights them (e.g. 0.5 simple + pruned)."""
    simple_blank, simple_label = simple_lattice(am, lm, targets, blank)
    simple = lattice_nll(simple_blank, simple_label, logit_lengths, target_lengths)
    start = prune_ranges(simple_blank, simple_label, logit_lengths, target_lengths, s_range)
    blank_lp, label_lp = pruned_lattice(joint, enc_proj, dec_proj, targets, start, s_range,
                                        blank)
    return simple, lattice_nll(blank_lp, label_lp, logit_lengths, target_lengths)
