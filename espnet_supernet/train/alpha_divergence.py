"""Alpha-divergence knowledge distillation (AlphaNet, Wang et al., ICML 2021), as TODM
(Shangguan et al., ICASSP 2024) uses it in place: the largest subnet's detached output
distribution p teaches each smaller subnet's distribution q within the same step.

    D_a(p || q) = sum_i q_i ((p_i / q_i)^a - 1) / (a (a - 1))

a -> 1 gives KL(p || q), a -> 0 gives KL(q || p). Per sample the larger of D_{a_min} and
D_{a_max} is used (a_min = -1, a_max = 1 by default; on a tie a_max), which penalises
both over- and under-estimating the teacher. The importance weights w = p / q are
detached and clipped as AlphaNet's ``loss_ops.f_divergence`` clips them (clip c = 5, its
training config's ``iw_clip``):

- a ~ 0 (|a| < 1e-3): w itself is clipped to [0, c]: D = sum_i q_i (-log w_i),
  rho_i = log w_i - 1;
- a ~ 1 (|a - 1| < 1e-3): no clip: D = sum_i q_i w_i log w_i, rho_i = w_i;
- otherwise w^a is clipped to [0, c]: D = sum_i q_i (w_i^a - 1) / (a (a - 1)),
  rho_i = w_i^a / a + 1 / (a (a - 1)).

The gradient is that of the surrogate ``-sum_i sg(q_i rho_i) log q_i`` (rho = -dD/dq up to
the clip), so nothing flows into the teacher. Computed from log-probabilities (log w =
log p - log q), which gives AlphaNet's values where its probability ratio is finite.
"""

import math
from typing import Tuple

import torch

_EPS = 1e-3  # |a| or |a - 1| below this: the KL limits


def _divergence_terms(log_p: torch.Tensor, log_q: torch.Tensor, alpha: float,
                      iw_clip: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(D per row, rho per class) from detached log-probabilities (..., V), clipped as
    AlphaNet's ``f_divergence`` (see the module docstring)."""
    log_w = log_p - log_q
    q = log_q.exp()
    if abs(alpha) < _EPS:  # KL(q || p), the ratio clipped
        log_w = log_w.clamp(max=math.log(iw_clip))
        return (q * -log_w).sum(-1), log_w - 1.0
    if abs(alpha - 1.0) < _EPS:  # KL(p || q), not clipped
        w = log_w.exp()
        return (q * w * log_w).sum(-1), w
    w_a = (alpha * log_w).exp().clamp(max=iw_clip)
    norm = alpha * (alpha - 1.0)
    return (q * (w_a - 1.0)).sum(-1) / norm, w_a / alpha + 1.0 / norm


def alpha_divergence(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    alpha_min: float = -1.0,
    alpha_max: float = 1.0,
    iw_clip: float = 5.0,
    normalized: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Adaptive alpha-divergence of each row (..., V) of the student from the teacher.

    Args:
        teacher_logits: (..., V) logits (or log-probabilities) of the teacher; detached.
        student_logits: (..., V) of the student; the gradient flows only into these.
        alpha_min, alpha_max: the two alphas; per row the larger divergence is used.
        iw_clip: upper clip of the importance weights (of w at alpha ~ 0, of w^alpha
            for alpha away from 0 and 1; none at alpha ~ 1), as AlphaNet.
        normalized: both inputs are already log-probabilities (skips two log-softmaxes).

    Returns:
        ``(loss, divergence)``, both (...,): ``loss`` carries the gradient (its value is
        not the divergence), ``divergence`` is the detached value D of the chosen alpha.
    """
    log_p, log_q_grad = teacher_logits.detach().float(), student_logits.float()
    if not normalized:
        log_p, log_q_grad = log_p.log_softmax(dim=-1), log_q_grad.log_softmax(dim=-1)
    log_q = log_q_grad.detach()
    d_min, rho_min = _divergence_terms(log_p, log_q, alpha_min, iw_clip)
    d_max, rho_max = _divergence_terms(log_p, log_q, alpha_max, iw_clip)
    use_max = (d_max >= d_min).unsqueeze(-1)
    rho = torch.where(use_max, rho_max, rho_min)
    divergence = torch.where(use_max.squeeze(-1), d_max, d_min)
    loss = -((log_q.exp() * rho).detach() * log_q_grad).sum(-1)
    return loss, divergence
