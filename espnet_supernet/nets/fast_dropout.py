"""Dropout whose CPU mask costs a quarter of a random word per element.

``torch.nn.Dropout`` on CPU draws one Bernoulli sample per element, which in a demo TODM
training step (batch 12 x 4 s, 2 threads) costs more time than the RNN-T loss. This
module draws 64 random bits per 4 elements (``randint`` on int64, viewed as int16) and
keeps an element when its 16 bits are at or above ``p`` x 2^16: the drop probability is
``p`` rounded to a multiple of 2^-16. Same ``p`` attribute, same scaling by 1 / (1 - p),
same module interface (drop-in, also for ``adaptive_dropout``, which sets ``p``); on CUDA,
in eval mode or with ``p`` 0 or 1 it calls ``torch.nn.functional.dropout``.
"""

import torch
import torch.nn.functional as F


class _MaskedScale(torch.autograd.Function):
    """y = x * keep * scale; the gradient is masked and scaled the same way."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> torch.Tensor:
    """Bool mask of ``shape``, each element False with probability ``p`` (to 2^-16)."""
    numel = 1
    for size in shape:
        numel *= size
    words = torch.randint(torch.iinfo(torch.int64).min, torch.iinfo(torch.int64).max,
                          ((numel + 3) // 4,), dtype=torch.int64, device=device)
    bits = words.view(torch.int16)[:numel].view(shape)
    return bits >= (-32768 + round(p * 65536))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout`` with the cheaper CPU mask."""
    if not training or p <= 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, keep_mask(x.shape, p, x.device), 1.0 / (1.0 - p))


class FastDropout(torch.nn.Dropout):
    """``torch.nn.Dropout`` with the cheaper CPU mask (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return dropout(x, self.p, self.training)


def use_fast_dropout(module: torch.nn.Module) -> torch.nn.Module:
    """Replace every ``torch.nn.Dropout`` submodule of ``module`` by a ``FastDropout`` of
    the same rate, in place; returns ``module``."""
    for name, child in list(module.named_children()):
        if type(child) is torch.nn.Dropout:
            setattr(module, name, FastDropout(child.p, child.inplace))
        else:
            use_fast_dropout(child)
    return module
