#!/usr/bin/env python3
"""CPU benchmark of Omni-sparsity exports: file size and latency per sparsity level.

Usage:
    .venv/bin/python bench/bench_sparsity.py [--config demo] [--threads 2] [--batch 4]
        [--seconds 6] [--repeats 7] [--warmup 2] [--quick] [--output PATH]

The bench supernet (``bench_common``'s configs, random weights, largest size) gets
magnitude masks at the levels {0, 0.3, 0.5, 0.7, 0.85}, twice:

- unstructured (FFN, attention and pointwise-conv weights): each level is exported in the
  compressed format (bitmask + nonzero values); goal: file within 10% of density x dense
  size plus the 1-bit mask. Compute stays dense, so latency is reported, not expected to
  drop;
- structured (``ffn_rows``: whole FFN hidden units): each level is exported as a
  physically smaller dense ``pruned_conformer``; its encoder forward is timed against
  stock ESPnet's ``ConformerEncoder`` of the full size (the level-0 export) in the same
  run, each run paired with the stock runs just before and after it; goal: faster than
  stock at every level above 0, the time fraction within 0.05 of the FLOPs fraction.

Writes ``bench/results/sparsity_<config>.json`` and prints a table. A benchmark, not a
test: it never fails on a missed goal.
"""

import argparse
import io
import statistics
import sys
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    CONFIGS,
    add_timing_arguments,
    build_supernet,
    fill_timing_defaults,
    interleaved,
    machine_info,
    make_batch,
    median_ratio,
    train_config,
    write_result,
)

LEVELS = [0.0, 0.3, 0.5, 0.7, 0.85]
GOAL_FILE_SLACK = 0.10
GOAL_TIME_VS_FLOPS = 0.05


def saved_bytes(obj) -> int:
    """Size of ``torch.save(obj)``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer().nbytes


def encoder_flops(encoder, xs, ilens) -> float:
    """FLOPs of one encoder forward (``FlopCounterMode``)."""
    from espnet_supernet.nets.subnet_cost import flop_counter

    counter = flop_counter()
    with counter, torch.inference_mode():
        encoder(xs, ilens)
    return counter.get_total_flops()


def run(args: argparse.Namespace) -> dict:
    """Export and measure every level of both structures; returns the JSON record."""
    from espnet_supernet.export.sparse_export import export_sparsity_level
    from espnet_supernet.export.sparse_storage import compress_state_dict
    from espnet_supernet.export.subnet_export import export_subnet
    from espnet_supernet.sparsity.omni_sparsity import OmniSparsity
    from espnet_supernet.tasks.asr import SupernetASRTask

    torch.set_num_threads(args.threads)
    loadavg = list(__import__("os").getloadavg())
    config = train_config(args.config, False)
    build = lambda conf: SupernetASRTask.build_model(argparse.Namespace(**conf))  # noqa: E731
    xs, ilens = make_batch(args.batch, args.seconds, config["input_size"])
    result = dict(config=args.config, threads=args.threads, batch=args.batch,
                  seconds=args.seconds, repeats=args.repeats, levels=LEVELS,
                  goals=dict(file_within=GOAL_FILE_SLACK,
                             time_vs_flops=GOAL_TIME_VS_FLOPS),
                  machine=machine_info(args.threads, loadavg))
    for structure, types in (("unstructured", ["ffn", "mhsa", "conv"]), ("ffn_rows", ["ffn"])):
        model = build_supernet(args.config, False)
        model.set_sparsity(OmniSparsity(levels=LEVELS, layer_types=types, structure=structure,
                                        warmup_steps=0))
        model.sparsity.refresh(None)
        exports = {}
        for level in reversed(model.subnet_names):  # dense first
            exported = export_sparsity_level(model, config, level, build)
            net = build(exported.config).eval()
            net.load_state_dict(exported.state_dict, strict=True)
            exports[level] = (exported, net)
        # ESPnet's ConformerEncoder of the full size (the dense level's stock export)
        dense = export_subnet(model, config, "sp0", build)
        stock = build(dense.config).eval()
        stock.load_state_dict(dense.state_dict, strict=True)
        stock = stock.encoder
        dense_bytes = saved_bytes(dense.state_dict)
        dense_numel = sum(v.numel() for v in dense.state_dict.values() if v.is_floating_point())
        stock_flops = encoder_flops(stock, xs, ilens)
        items = [("stock", lambda: None, lambda: stock(xs, ilens))] + [
            (level, lambda: None, (lambda enc: lambda: enc(xs, ilens))(net.encoder))
            for level, (_, net) in exports.items() if level != "sp0"]
        with torch.inference_mode():
            times = interleaved(items, args.repeats, args.warmup, reference="stock")
        rows = {}
        for level, (exported, net) in exports.items():
            state = exported.state_dict
            floats = [v for v in state.values() if v.is_floating_point()]
            numel = sum(v.numel() for v in floats)
            nonzero = sum(int((v != 0).sum()) for v in floats)
            stored = compress_state_dict(state) if structure == "unstructured" else state
            size = saved_bytes(stored)
            expected = nonzero / dense_numel * dense_bytes + (
                numel / 8 if structure == "unstructured" else 0)
            row = dict(encoder=exported.encoder, params=exported.num_params,
                       nonzero_params=nonzero, file_bytes=size,
                       file_vs_dense=size / dense_bytes, expected_bytes=expected,
                       file_vs_expected=size / expected,
                       flops_fraction=encoder_flops(net.encoder, xs, ilens) / stock_flops)
            if level != "sp0":
                row["ms"] = statistics.median(times[level])
                row["stock_ms"] = statistics.median(times[f"stock@{level}"])
                row["time_vs_stock"] = median_ratio(times[level], times[f"stock@{level}"])
            row["goal_file_met"] = row["file_vs_expected"] <= 1 + GOAL_FILE_SLACK
            if structure == "ffn_rows" and level != "sp0":
                row["goal_speed_met"] = (row["time_vs_stock"] < 1.0 and row["time_vs_stock"]
                                         <= row["flops_fraction"] + GOAL_TIME_VS_FLOPS)
            rows[level] = row
        result[structure] = rows
    return result


def print_table(res: dict) -> None:
    """One line per structure and level."""
    print(f"{'structure':>12} {'level':>6} {'encoder':>16} {'params':>9} {'file MB':>8} "
          f"{'file/dense':>10} {'file/exp':>8} {'flops':>6} {'time/stock':>10}")
    for structure in ("unstructured", "ffn_rows"):
        for level, r in res[structure].items():
            t = f"{r['time_vs_stock']:.3f}" if "time_vs_stock" in r else "-"
            print(f"{structure:>12} {level:>6} {r['encoder']:>16} {r['nonzero_params']:9d} "
                  f"{r['file_bytes'] / 2**20:8.2f} {r['file_vs_dense']:10.3f} "
                  f"{r['file_vs_expected']:8.3f} {r['flops_fraction']:6.3f} {t:>10}")


def main(cmd: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    add_timing_arguments(parser)
    args = fill_timing_defaults(parser.parse_args(cmd))
    return write_result(run(args), args, f"sparsity_{args.config}", print_table)

if __name__ == "__main__":
    main()
