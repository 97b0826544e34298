#!/usr/bin/env python3
"""CPU benchmark of the elastic front end: the smallest size with a narrower conv2d front end.

Usage:
    .venv/bin/python bench/bench_elastic_frontend.py [--config {stock12x256,demo,paper}]
        [--widths 256 128 64 32] [--size 16] [--threads 2] [--batch 4] [--seconds 6]
        [--repeats 7] [--warmup 2] [--quick] [--output PATH]

Every size of whole blocks pays the front end (about 0.37 of a 12 x 256 encoder's FLOPs):
``subnet_frontend_channels`` lets a size run it at fewer channels. On one random batch
(``--batch`` x ``--seconds`` s of features), eval mode, ``torch.inference_mode()``:

- stock ESPnet ``ConformerEncoder`` vs the full supernet with the same weights (the
  time ratio and the max |output difference|);
- the named size ``--size`` (default: the smallest) and the front end alone at each of
  ``--widths`` channels (the first is the full front end: "before"), each as a fraction of
  the full encoder's time (paired with the full runs around it, median over repeats)
  next to its FLOPs fraction from the cost model (``subnet_cost.flops_table``, checked
  against ``FlopCounterMode`` on the real forward);
- goal: some width brings the size to <= 0.25 of the full encoder's time.

Writes ``bench/results/elastic_frontend_<config>.json`` (``..._quick.json`` with
``--quick``) and prints a table. A benchmark, not a test: it never fails on a missed goal.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    CONFIGS,
    add_timing_arguments,
    build_encoders,
    fill_timing_defaults,
    interleaved,
    machine_info,
    make_batch,
    median_ratio,
    write_result,
)

GOAL_TIME_FRACTION = 0.25


def run(args: argparse.Namespace) -> dict:
    from espnet_supernet.nets.subnet_cost import flops_table, measured_flops_per_second

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    loadavg_start, wall = os.getloadavg(), time.perf_counter()
    stock, supernet = build_encoders(args.config)
    stock.eval()
    supernet.eval()
    size = args.size or supernet.subnet_names[0]
    channels = supernet.embed.conv[0].weight.shape[0]
    widths = args.widths or [channels, channels // 2, channels // 4, channels // 8]
    xs, ilens = make_batch(args.batch, args.seconds, supernet.input_size)
    flops = flops_table(supernet, args.seconds)
    mask = supernet.subnet_mask(size)
    counted = {w: measured_flops_per_second(supernet, mask, args.seconds, w) for w in widths}

    def use(width: Optional[int]):
        def prepare() -> None:
            supernet.set_named_subnet(size)
            supernet.set_frontend_channels(width)
        return prepare

    def full() -> None:
        supernet.set_subnet(None)

    with torch.inference_mode():
        supernet.set_subnet(None)
        diff = (supernet(xs, ilens)[0] - stock(xs, ilens)[0]).abs().max().item()
        items = [("stock", lambda: None, lambda: stock(xs, ilens)),
                 ("full", full, lambda: supernet(xs, ilens))]
        for w in widths:
            items.append((f"size@{w}", use(w), lambda: supernet(xs, ilens)))
            items.append((f"frontend@{w}", use(w), lambda: supernet.forward_frontend(xs, ilens)))
        times = interleaved(items, args.repeats, args.warmup, reference="full")
    rows = {}
    for w in widths:
        model = flops.subnet(mask, w)
        rows[str(w)] = {
            "frontend_channels": w,
            "size_flops_fraction": model / flops.total,
            "size_time_fraction": median_ratio(times[f"size@{w}"], times[f"full@size@{w}"]),
            "frontend_flops_fraction": flops.frontend.at(w) / flops.total,
            "frontend_time_fraction": median_ratio(times[f"frontend@{w}"],
                                                   times[f"full@frontend@{w}"]),
            "size_ms": statistics.median(times[f"size@{w}"]),
            "flops_model_rel_error": abs(model / counted[w] - 1),
        }
        rows[str(w)]["goal_met"] = rows[str(w)]["size_time_fraction"] <= GOAL_TIME_FRACTION
    return {
        "config": args.config,
        "encoder": CONFIGS[args.config],
        "size": size,
        "size_modules": sum(supernet.layout.modules_of(mask)),
        "full_channels": channels,
        "threads": args.threads,
        "batch": args.batch,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "quick": args.quick,
        "stock_ms": statistics.median(times["stock"]),
        "full_ms": statistics.median(times["full"]),
        "full_vs_stock": median_ratio(times["full@stock"], times["stock"]),
        "max_abs_diff": diff,
        "widths": rows,
        "goal": f"size time fraction <= {GOAL_TIME_FRACTION} at some width",
        "goal_met": any(r["goal_met"] for r in rows.values()),
        "machine": machine_info(args.threads, loadavg_start),
        "wall_s": time.perf_counter() - wall,
        "raw_ms": times,
    }


def print_table(res: dict) -> None:
    print(f"{res['config']}: size {res['size']} ({res['size_modules']} modules), "
          f"{res['threads']} thread(s), batch {res['batch']} x {res['seconds']:g} s; full / "
          f"stock ESPnet {res['full_vs_stock']:.2f} (max abs diff {res['max_abs_diff']:.1e})")
    print(f"{'channels':>8} {'size FLOPs':>10} {'size time':>9} {'front FLOPs':>11} "
          f"{'front time':>10}  goal")
    for r in res["widths"].values():
        print(f"{r['frontend_channels']:>8} {r['size_flops_fraction']:>10.3f} "
              f"{r['size_time_fraction']:>9.3f} {r['frontend_flops_fraction']:>11.3f} "
              f"{r['frontend_time_fraction']:>10.3f}  {'yes' if r['goal_met'] else 'no'}")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="stock12x256")
    parser.add_argument("--size", default=None, help="named size (default: the smallest)")
    parser.add_argument("--widths", type=int, nargs="+", default=None,
                        help="front-end channels to time, the full width first (default: "
                        "C, C/2, C/4, C/8)")
    add_timing_arguments(parser)
    return parser


def main(cmd: Optional[List[str]] = None) -> dict:
    args = fill_timing_defaults(get_parser().parse_args(cmd))
    return write_result(run(args), args, f"elastic_frontend_{args.config}", print_table)


if __name__ == "__main__":
    main()
