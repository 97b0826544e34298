"""ScaledAdam (Yao et al., "Zipformer", ICLR 2024; icefall), the optimizer TODM trains with.

For every tensor with more than one element the Adam direction ``g / (sqrt(v) + eps)`` is
multiplied by the tensor's RMS (clamped to [param_min_rms, param_max_rms]), so each update
changes a tensor by a fixed fraction of its own size whatever its scale. A learned scale
per tensor is updated every ``size_update_period`` steps from the gradient with respect to
the tensor's log-scale, ``sum(g * p)``, with its own second moment. Momentum (beta1)
smooths the combined update. Scalars (and 1-element tensors) get plain Adam at
``scalar_lr_scale`` x lr, clamped to ``[-scalar_max, scalar_max]``. With ``clipping_scale``
the whole gradient is clipped to ``clipping_scale`` x the median of the recent total
gradient norms (updated every ``clipping_update_period`` steps).
"""

import math
from typing import Iterable, List, Optional, Tuple

import torch


class ScaledAdam(torch.optim.Optimizer):
    """Parameter-scale-relative Adam.

    Args:
        params: parameters or parameter groups.
        lr: learning rate (a relative change per step for non-scalar tensors).
        betas: (momentum, second-moment decay).
        eps: added to the second-moment root.
        scalar_lr_scale: lr factor for scalars and for the learned per-tensor scale.
        param_min_rms, param_max_rms: clamp of the RMS that scales the updates; the
            learned scale does not push a tensor's RMS out of this range.
        scalar_max: clamp of scalar parameters.
        size_update_period: steps between updates of the learned scale.
        clipping_scale: clip the gradient norm to this multiple of the recent median
            (None: no clipping).
        clipping_update_period: steps between updates of the clipping threshold.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.045,
        betas: Tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        scalar_lr_scale: float = 0.1,
        param_min_rms: float = 1e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_scale: Optional[float] = 2.0,
        clipping_update_period: int = 100,
    ):
        if not 0 < lr:
            raise ValueError(f"lr must be positive, got {lr}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, scalar_lr_scale=scalar_lr_scale,
                        param_min_rms=param_min_rms, param_max_rms=param_max_rms,
                        scalar_max=scalar_max, size_update_period=size_update_period)
        super().__init__(params, defaults)
        self.clipping_scale = clipping_scale
        self.clipping_update_period = clipping_update_period
        self._recent_norms: List[float] = []
        self._clip_threshold: Optional[float] = None

    # ----------------------------------------------------------------- clipping
    def _clip_factor(self) -> float:
        """Factor (<= 1) for this step's gradients; tracks the recent norms."""
        if self.clipping_scale is None:
            return 1.0
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        if not grads:
            return 1.0
        norm = float(torch.sqrt(sum((gr.detach().float() ** 2).sum() for gr in grads)))
        self._recent_norms.append(norm)
        if len(self._recent_norms) >= self.clipping_update_period or \
                self._clip_threshold is None:
            median = sorted(self._recent_norms)[len(self._recent_norms) // 2]
            self._clip_threshold = self.clipping_scale * median
            if len(self._recent_norms) >= self.clipping_update_period:
                self._recent_norms = []
        if not math.isfinite(norm):
            return 0.0  # skip a step with inf/nan gradients
        return min(1.0, self._clip_threshold / (norm + 1e-20))

    # ----------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter with a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        factor = self._clip_factor()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad * factor if factor != 1.0 else p.grad
                if grad.is_sparse:
                    raise RuntimeError("ScaledAdam does not support sparse gradients")
                if p.numel() == 1:
                    self._scalar_step(p, grad, group)
                else:
                    self._tensor_step(p, grad, group)
        return loss

    def _scalar_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        beta1, beta2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt() + group["eps"]
        state["exp_avg"].mul_(beta1).add_(grad / denom, alpha=1 - beta1)
        lr = group["lr"] * group["scalar_lr_scale"]
        p.add_(state["exp_avg"], alpha=-lr / (1 - beta1 ** state["step"]))
        p.clamp_(-group["scalar_max"], group["scalar_max"])

    def _tensor_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        beta1, beta2 = group["betas"]
        period = group["size_update_period"]
        if not state:
            state["step"] = 0
            state["delta"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            state["param_rms"] = self._rms(p, group)
            state["scale_grads"] = torch.zeros(period, dtype=p.dtype, device=p.device)
            state["scale_exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
        step = state["step"]
        state["scale_grads"][step % period] = (grad * p).sum()
        if step % period == period - 1:  # learned scale: Adam on the log-scale gradient
            self._scale_step(p, state, group)
            state["param_rms"] = self._rms(p, group)
        state["step"] = step + 1
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt() + group["eps"]
        direction = grad / denom * state["param_rms"]
        state["delta"].mul_(beta1).add_(direction, alpha=-group["lr"] * (1 - beta1))
        p.add_(state["delta"])

    def _scale_step(self, p: torch.Tensor, state: dict, group: dict) -> None:
        """Multiply ``p`` by exp(step) with an Adam step on its log-scale gradient,
        unless that would take its RMS out of [param_min_rms, param_max_rms]."""
        beta2 = group["betas"][1] ** group["size_update_period"]
        grads = state["scale_grads"]
        state["scale_exp_avg_sq"].mul_(beta2).add_((grads ** 2).mean(), alpha=1 - beta2)
        denom = state["scale_exp_avg_sq"].sqrt() + group["eps"]
        step = -group["lr"] * group["scalar_lr_scale"] * grads.sum() / denom
        rms = float(p.pow(2).mean().sqrt())
        if (rms < group["param_min_rms"] and step < 0) or \
                (rms > group["param_max_rms"] and step > 0):
            return
        p.mul_(torch.exp(step.clamp(-0.5, 0.5)))

    @staticmethod
    def _rms(p: torch.Tensor, group: dict) -> torch.Tensor:
        return p.detach().pow(2).mean().sqrt().clamp(group["param_min_rms"],
                                                      group["param_max_rms"])
