"""Each named subnet's mask, parameter count and encoder FLOPs per second of audio.

Counting conventions: see :mod:`espnet_supernet.nets.subnet_cost`. ``total_params`` counts
the whole model as the subnet uses it (its encoder modules, its own CTC head, the decoder).
The command line is ``espnet_supernet.bin.subnet_report``.
"""

import json
import logging
from pathlib import Path
from typing import Dict

import torch

from espnet_supernet.nets.subnet_cost import flop_counter, flops_table, params_table
from espnet_supernet.nets.switchable_linear import SwitchableLinear
from espnet_supernet.selection.report import kept_components


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def measured_encoder_flops(model: torch.nn.Module, name: str, seconds: float) -> float:
    """FLOPs per second of audio of the named subnet's encoder, counted by
    ``FlopCounterMode`` on a ``seconds``-long input (100 feature frames per second)."""

    encoder = model.encoder
    previous = model.active_subnet
    model.set_subnet(name)
    frames = int(100 * seconds)
    feats = torch.zeros(1, frames, _feat_dim(model))
    counter = flop_counter()
    with counter:
        encoder(feats, torch.tensor([frames]))
    model.set_subnet(previous)
    return counter.get_total_flops() / seconds


def _input_size(encoder: torch.nn.Module) -> int:
    """A feature dimension that an encoder with conv2d subsampling accepts."""
    linear = encoder.embed.out[0]
    odim = encoder.embed.conv[0].weight.shape[0]
    freq = linear.in_features // odim  # ((F - 1) // 2 - 1) // 2
    return 4 * freq + 3


def subnet_report(model: torch.nn.Module, seconds: float = 10.0) -> Dict[str, dict]:
    """``{name: {mask, num_modules, num_units, kept, encoder_params, total_params,
    encoder_gflops_per_sec}}`` (``mask`` is the unit mask, see ``encoder.layout``; a size
    with a narrow front end also has ``frontend_channels``, and its costs are at them).
    For an MH-SSM supernet (TODM): ``{name: {depth, width, encoder_params, total_params,
    encoder_gflops_per_sec}}``, FLOPs counted by ``FlopCounterMode``; a model trained
    with ``train_only`` reports that size only."""
    encoder = model.encoder
    if getattr(model, "sparsity", None) is not None:
        return sparse_report(model, seconds)
    if hasattr(encoder, "subnet_params"):
        rest = _numel(model) - _numel(encoder)
        return {name: {**spec, "encoder_params": encoder.subnet_params(spec),
                       "total_params": encoder.subnet_params(spec) + rest,
                       "encoder_gflops_per_sec":
                           measured_encoder_flops(model, name, seconds) / 1e9}
                for name, spec in encoder.subnets.items()
                if getattr(model, "train_only", None) in (None, name)}
    params, flops = params_table(encoder), flops_table(encoder, seconds)
    unused_heads = 0
    lo = getattr(getattr(model, "ctc", None), "ctc_lo", None)
    if isinstance(lo, SwitchableLinear):
        unused_heads = _numel(lo) - _numel(lo.heads[0])
    selection = getattr(model, "selection", None)  # training-time scores, not deployed
    teacher = getattr(model, "kd_teacher", None)  # a training-time copy, not deployed
    rest = _numel(model) - _numel(encoder) - unused_heads - sum(
        _numel(m) for m in (selection, teacher) if m is not None)
    report = {}
    for name in model.subnet_names:
        if getattr(model, "train_only", None) not in (None, name):
            continue
        mask = encoder.subnet_mask(name)
        channels = encoder.frontend_channels_of(name)
        enc = int(params.subnet(mask, channels))
        report[name] = {
            "mask": mask,
            "num_modules": sum(encoder.layout.modules_of(mask)),
            "num_units": sum(mask),
            "kept": kept_components(encoder.layout, mask),
            "encoder_params": enc,
            "total_params": enc + rest,
            "encoder_gflops_per_sec": flops.subnet(mask, channels) / 1e9,
        }
        if channels is not None:
            report[name]["frontend_channels"] = channels
    return report


def sparse_report(model: torch.nn.Module, seconds: float = 10.0) -> Dict[str, dict]:
    """``{level name: {sparsity, density, encoder_params, total_params,
    encoder_gflops_per_sec}}`` of an Omni-sparsity model: parameters are the nonzero
    ones; FLOPs are the dense encoder's (``FlopCounterMode``), minus, for structured
    sparsity, the pruned FFN units' (4 x d_model per unit and frame: a W1 row and a W2
    column of multiply-adds)."""
    sparsity, encoder = model.sparsity, model.encoder
    dense_flops = measured_encoder_flops(model, model.subnet_names[-1], seconds)
    frames = encoder(torch.zeros(1, 100, _feat_dim(model)), torch.tensor([100]))[1]
    frames_per_second = float(frames[0])  # 100 feature frames = 1 s
    rest = _numel(model) - sparsity.prunable_params - _numel(sparsity)
    report = {}
    for name in model.subnet_names:
        index = sparsity.level_index(name)
        kept = sparsity.nonzero_params([index] * len(sparsity.targets))
        flops = dense_flops
        if sparsity.structure == "ffn_rows":
            pruned_units = sum(int((sparsity.keep(i) <= index).sum())
                               for i in range(len(sparsity.targets)))
            flops -= 4 * encoder.output_size() * pruned_units * frames_per_second
        report[name] = {
            "sparsity": sparsity.levels[index], "structure": sparsity.structure,
            "density": kept / sparsity.prunable_params,
            "encoder_params": _numel(encoder) - sparsity.prunable_params + kept,
            "total_params": rest + kept, "encoder_gflops_per_sec": flops / 1e9}
    return report


def _feat_dim(model: torch.nn.Module) -> int:
    return model.frontend.output_size() if model.frontend is not None else \
        _input_size(model.encoder)


def write_subnet_report(model: torch.nn.Module, output: Path,
                        seconds: float = 10.0) -> Dict[str, dict]:
    """Write ``subnet_report(model, seconds)`` to ``output`` (JSON), log one line per
    subnet, and return it."""
    report = subnet_report(model, seconds)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    for name, row in report.items():
        shape = (f"{row['num_modules']} modules" if "num_modules" in row
                 else f"sparsity {row['sparsity']}" if "sparsity" in row
                 else f"depth {row['depth']}, width {row['width']}")
        logging.info("subnet %s: %s, %.2fM encoder params, %.2f GFLOPs/s", name, shape,
                     row["encoder_params"] / 1e6, row["encoder_gflops_per_sec"])
    return report
