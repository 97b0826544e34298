"""Parameter and FLOP counts of a supernet encoder's subnets.

Conventions: parameters are counted over the modules a subnet runs (its kept modules with
their pre-norms, plus the always-on front end, per-block final norms and the output norm).
FLOPs are measured, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` counts the
matmuls and convolutions (2 x multiply-adds) of the real forward of the subnet on one
utterance of ``seconds`` of audio (100 feature frames per second), divided by ``seconds``.
Attention's T^2 terms therefore correspond to a ``seconds``-long utterance.
"""

from typing import List, Sequence, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode

from espnet_supernet.nets.subnet_space import MODULE_TYPES


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def module_params(encoder: torch.nn.Module) -> Tuple[int, List[int]]:
    """(always-on parameter count, parameter count of each of the M prunable modules)."""
    per_module: List[int] = []
    for layer in encoder.encoders:
        per_module += [
            _numel(layer.feed_forward_macaron) + _numel(layer.norm_ff_macaron),
            _numel(layer.self_attn) + _numel(layer.norm_mha),
            _numel(layer.conv_module) + _numel(layer.norm_conv),
            _numel(layer.feed_forward) + _numel(layer.norm_ff),
        ]
    fixed = _numel(encoder) - sum(per_module)
    assert len(per_module) == len(MODULE_TYPES) * len(encoder.encoders)
    return fixed, per_module


def subnet_params(encoder: torch.nn.Module, mask: Sequence[int]) -> int:
    """Encoder parameters used by the subnet ``mask``."""
    fixed, per_module = module_params(encoder)
    return fixed + sum(n for n, keep in zip(per_module, mask) if keep)


@torch.no_grad()
def subnet_flops_per_second(
    encoder: torch.nn.Module, mask: Sequence[int], seconds: float = 10.0
) -> float:
    """Measured encoder FLOPs per second of audio for the subnet ``mask``."""
    was_training = encoder.training
    encoder.eval()
    param = next(encoder.parameters())
    frames = int(round(seconds * 100))
    xs = torch.randn(1, frames, encoder.input_size, dtype=param.dtype, device=param.device)
    lens = torch.tensor([frames], device=param.device)
    counter = FlopCounterMode(display=False)
    with counter:
        encoder.forward_subnet(encoder.forward_frontend(xs, lens), gates=list(mask))
    encoder.train(was_training)
    return counter.get_total_flops() / seconds

