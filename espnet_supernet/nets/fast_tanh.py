"""tanh as 2 sigmoid(2x) - 1 on CPU.

In the torch 2.9 CPU build used here ``torch.tanh`` runs about 6x slower than
``torch.sigmoid`` (13 vs 2 ms on a (99, 57, 256) joint-network tensor, 1 thread), and the
RNN-T joint network applies it to a (T, U + 1, J) tensor per utterance and per trained
size: the largest single item of a TODM training step. ``FastTanh`` computes the same
function through sigmoid, in place on one buffer (max. difference to ``torch.tanh``
2e-7), with tanh's own backward (1 - y^2) g; on other devices it calls ``torch.tanh``.
"""

import torch


class _SigmoidTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.mul(x, 2.0).sigmoid_().mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class FastTanh(torch.nn.Module):
    """Drop-in for ``torch.nn.Tanh`` (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return torch.tanh(x)
        return _SigmoidTanh.apply(x)
