"""RNN-T loss (Graves, 2012) with ``warprnnt_pytorch.RNNTLoss``'s call signature.

ESPnet's transducer path calls ``criterion(joint_out, target, t_len, u_len)`` with a
warp-transducer loss that cannot be installed here. Two implementations of the same loss:

- ``scan`` (default): the forward variable computed one frame at a time, each frame's
  label recursion solved in closed form with ``logcumsumexp`` (below), the gradient by
  autograd. Vectorised over the batch and the labels, it runs in any torch build and on
  any device; on this CPU it takes 45-65 ms (forward and backward) where torchaudio's
  kernel, which walks each utterance's lattice node by node, takes 145 ms (12 x 4 s,
  56 labels, 31 units; half of the joint-and-loss time of a demo training step).
- ``torchaudio``: ``torchaudio.functional.rnnt_loss`` (deprecated in torchaudio 2.9).

The frame recursion: with ``blank(t, u)`` and ``label(t, u)`` the log-probabilities of
emitting blank at node (t, u) and label ``y_{u+1}``, the forward variable
``a(t, u) = logaddexp(a(t-1, u) + blank(t-1, u), a(t, u-1) + label(t, u-1))``.
Along u this is a linear recurrence in the log semiring, so with
``C(t, u) = sum_{j<u} label(t, j)``:
``a(t, u) = C(t, u) + logcumsumexp_u(a(t-1, u) + blank(t-1, u) - C(t, u))``.
The log-likelihood is ``a(T-1, U) + blank(T-1, U)``.
"""

import torch

IMPLEMENTATIONS = ("scan", "torchaudio")


def rnnt_loss_scan(logits: torch.Tensor, targets: torch.Tensor, logit_lengths: torch.Tensor,
                   target_lengths: torch.Tensor, blank: int = 0,
                   normalized: bool = False) -> torch.Tensor:
    """Per-utterance RNN-T negative log-likelihood.

    Args:
        logits: joint network output (B, T, U + 1, V).
        targets: labels (B, U) (padding any value).
        logit_lengths: valid frames (B,).
        target_lengths: valid labels (B,).
        blank: the blank id.
        normalized: ``logits`` are already log-probabilities.

    Returns:
        (B,) losses.
    """
    log_probs = logits.float() if normalized else logits.float().log_softmax(dim=-1)
    batch, frames, nodes, _ = log_probs.shape
    blank_lp = log_probs[..., blank]  # (B, T, U + 1)
    labels = targets[:, : nodes - 1].long().clamp(0, log_probs.size(-1) - 1)
    label_lp = log_probs[:, :, :-1].gather(
        -1, labels[:, None, :, None].expand(batch, frames, nodes - 1, 1)).squeeze(-1)
    return lattice_nll(blank_lp, label_lp, logit_lengths, target_lengths).to(log_probs.dtype)


def lattice_nll(blank_lp: torch.Tensor, label_lp: torch.Tensor, logit_lengths: torch.Tensor,
                target_lengths: torch.Tensor) -> torch.Tensor:
    """Per-utterance negative log-likelihood of an RNN-T lattice given by its transition
    log-probabilities: ``blank_lp`` (B, T, U + 1) of blank at node (t, u), ``label_lp``
    (B, T, U) of label y_{u+1} at node (t, u) (-inf: a pruned transition). Returns (B,)
    in float64's precision, as the input's dtype."""
    dtype = blank_lp.dtype
    batch, frames, _ = blank_lp.shape
    # the recursion in float64: C(t, u) reaches hundreds of nats, whose float32 rounding
    # would show in the gradient (2e-4 vs torchaudio; 1e-6 in float64)
    blank_lp, label_lp = blank_lp.double(), label_lp.double()
    zero = label_lp.new_zeros(batch, frames, 1)
    prefix = torch.cat([zero, label_lp.cumsum(dim=-1)], dim=-1)  # C(t, u): (B, T, U + 1)
    alpha = prefix[:, 0]
    alphas = [alpha]
    for t in range(1, frames):
        stay = alpha + blank_lp[:, t - 1] - prefix[:, t]
        alpha = prefix[:, t] + torch.logcumsumexp(stay, dim=-1)
        alphas.append(alpha)
    last_t = (logit_lengths.long() - 1).to(blank_lp.device)
    last_u = target_lengths.long().to(blank_lp.device)
    rows = torch.arange(batch, device=blank_lp.device)
    final = torch.stack(alphas, dim=1)[rows, last_t, last_u]
    return -(final + blank_lp[rows, last_t, last_u]).to(dtype)


class RNNTLoss(torch.nn.Module):
    """Mean RNN-T loss over the batch.

    Args:
        blank: the blank id.
        implementation: ``scan`` or ``torchaudio`` (see the module docstring).
    """

    def __init__(self, blank: int = 0, implementation: str = "scan"):
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"rnnt_loss must be one of {IMPLEMENTATIONS}, "
                             f"got {implementation!r}")
        self.blank, self.implementation = blank, implementation

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                logit_lengths: torch.Tensor, target_lengths: torch.Tensor,
                normalized: bool = False) -> torch.Tensor:
        """logits (B, T, U + 1, V) (log-probabilities if ``normalized``), targets (B, U),
        lengths (B,) -> scalar."""
        if self.implementation == "scan":
            return rnnt_loss_scan(logits, targets, logit_lengths, target_lengths,
                                  self.blank, normalized).mean()
        import torchaudio

        return torchaudio.functional.rnnt_loss(
            logits.float(), targets.int(), logit_lengths.int(), target_lengths.int(),
            blank=self.blank, reduction="mean", fused_log_softmax=not normalized)
