#!/usr/bin/env python3
"""What the authors' choices cost on CPU: step-1 updates with masked modules computed or
skipped, step-2 updates with stochastic depth per batch or per utterance, and the share of
the light VGG front end in the encoder's time and FLOPs (vs ESPnet's conv2d and a stock
ESPnet Conformer).

Usage:
    .venv/bin/python bench/bench_authors_options.py [--config demo] [--quick] \\
        [--threads 2] [--batch 4] [--seconds 6] [--repeats 7] [--warmup 2] [--output PATH]

1. Simple-Top-k step 1 (``selection_conf.masked_modules``): one training update (forward
   of the supernet and of the scored top-k subnet, backward, Adam) with ``skip`` and with
   ``compute``, at k = half the modules (the middle of step 1's annealing).
2. Step 2 (``model_conf.stochastic_depth_rate: 0.3``): one sandwich update with
   ``stochastic_depth_mode: batch`` and ``row``.
3. Front end (inference, eval mode): the time of ``forward_frontend`` and of the whole
   encoder for ``input_layer: conv2d`` (stock ESPnet's ConformerEncoder with the same
   weights timed too), ``vgg4`` with the authors' channels (32, 64, 64, 32) and with
   (8, 16, 16, 8); each front end's share of the encoder's time, and of its FLOPs from the
   cost model (``espnet_supernet.nets.subnet_cost``).

The variants of each part run interleaved (``bench_common.interleaved``) and ratios are
medians of paired repeats. Writes ``bench/results/authors_options_<config>[_quick].json``.
A benchmark, not a test: it never fails.
"""

import argparse
import os
import sys
import time
from statistics import median as _median
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    COMMON,
    CONFIGS,
    add_timing_arguments,
    ctc_supernet,
    fill_timing_defaults,
    interleaved,
    machine_info,
    make_batch,
    median_ratio,
    random_targets,
    training_update,
    write_result,
)

VGG_CHANNELS = {"vgg4 (32, 64, 64, 32)": [32, 64, 64, 32], "vgg4 (8, 16, 16, 8)": [8, 16, 16, 8]}


def bench_step1(config: str, xs, ilens, repeats: int, warmup: int) -> dict:
    from espnet_supernet.selection.simple_topk import SimpleTopKSelection

    runs, ks = [], {}
    for mode in ("skip", "compute"):
        model = ctc_supernet(config)
        masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
        m = len(next(iter(masks.values())))
        selection = SimpleTopKSelection(masks, selection_steps=1000, anneal_decrement=1,
                                        anneal_interval=1, masked_modules=mode)
        model.set_selection(selection)
        step = m - 1 - m // 2  # k = M // 2
        ks[mode] = selection.k_at(step)
        model.train()
        text, lens = random_targets(model, xs, ilens)
        optim = torch.optim.Adam(model.parameters(), lr=1e-4)
        runs.append((mode, lambda: torch.manual_seed(0), training_update(model, optim, xs, ilens,
                                                                  text, lens, step)))
    times = interleaved(runs, repeats, warmup)
    return {"k": ks["skip"], "modules": m, "ms": {k: _median(v) for k, v in times.items()},
            "compute_vs_skip": median_ratio(times["compute"], times["skip"]), "raw_ms": times}


def bench_step2(config: str, xs, ilens, repeats: int, warmup: int) -> dict:
    runs = []
    for mode in ("batch", "row"):
        model = ctc_supernet(config, stochastic_depth_rate=0.3, stochastic_depth_mode=mode)
        model.train()
        text, lens = random_targets(model, xs, ilens)
        optim = torch.optim.Adam(model.parameters(), lr=1e-4)
        state = {"step": 0}

        def run(model=model, optim=optim, text=text, lens=lens, state=state) -> None:
            training_update(model, optim, xs, ilens, text, lens, state["step"])()
            state["step"] += 1  # a new draw of dropped modules every update
        runs.append((mode, lambda: torch.manual_seed(0), run))
    times = interleaved(runs, repeats, warmup)
    return {"stochastic_depth_rate": 0.3, "ms": {k: _median(v) for k, v in times.items()},
            "row_vs_batch": median_ratio(times["row"], times["batch"]), "raw_ms": times}


@torch.no_grad()
def bench_frontends(config: str, xs, ilens, repeats: int, warmup: int) -> dict:
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

    from espnet_supernet.nets.subnet_cost import flops_table

    fronts = {"conv2d": None, **VGG_CHANNELS}
    encoders = {name: ctc_supernet(config, front).encoder.eval()
                for name, front in fronts.items()}
    arch = {k: v for k, v in CONFIGS[config].items() if k != "subnet_sizes"}
    stock = ConformerEncoder(**{**COMMON, **arch}).eval()
    stock.load_state_dict(encoders["conv2d"].state_dict(), strict=False)
    items = [("stock conv2d: encoder", lambda: None, lambda: stock(xs, ilens))]
    for name, enc in encoders.items():
        items.append((f"{name}: front end", lambda: None,
                      lambda enc=enc: enc.forward_frontend(xs, ilens)))
        items.append((f"{name}: encoder", lambda: None, lambda enc=enc: enc(xs, ilens)))
    times = interleaved(items, repeats, warmup)
    rows = {}
    for name, enc in encoders.items():
        table = flops_table(enc)
        rows[name] = {
            "front_end_ms": _median(times[f"{name}: front end"]),
            "encoder_ms": _median(times[f"{name}: encoder"]),
            "time_share": median_ratio(times[f"{name}: front end"], times[f"{name}: encoder"]),
            "flops_share": table.fixed / table.total,
            "encoder_gflops_per_s": table.total / 1e9,
            "front_end_params": sum(p.numel() for p in enc.embed.parameters()),
            "encoder_vs_stock_conv2d": median_ratio(times[f"{name}: encoder"],
                                                    times["stock conv2d: encoder"]),
        }
    return {"rows": rows, "stock_conv2d_encoder_ms": _median(times["stock conv2d: encoder"]),
            "raw_ms": times}


def print_table(res: dict) -> None:
    s1, s2 = res["step1"], res["step2"]
    print(f"step 1 update (Simple-Top-k, k = {s1['k']} of {s1['modules']}): skip "
          f"{s1['ms']['skip']:.0f} ms, compute {s1['ms']['compute']:.0f} ms: compute_vs_skip "
          f"{s1['compute_vs_skip']:.2f}")
    print(f"step 2 update (stochastic depth 0.3): batch {s2['ms']['batch']:.0f} ms, row "
          f"{s2['ms']['row']:.0f} ms: row_vs_batch {s2['row_vs_batch']:.2f}")
    print(f"{'front end':<24} {'front ms':>9} {'encoder ms':>11} {'time share':>11} "
          f"{'FLOPs share':>12} {'vs stock':>9}")
    for name, row in res["front_ends"]["rows"].items():
        print(f"{name:<24} {row['front_end_ms']:>9.1f} {row['encoder_ms']:>11.1f} "
              f"{row['time_share']:>11.3f} {row['flops_share']:>12.3f} "
              f"{row['encoder_vs_stock_conv2d']:>9.2f}")


def main(cmd: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    add_timing_arguments(parser)
    args = fill_timing_defaults(parser.parse_args(cmd))
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    start = time.perf_counter()
    xs, ilens = make_batch(args.batch, args.seconds, CONFIGS[args.config].get("input_size", 80))
    res = {
        "config": args.config, "batch": args.batch, "seconds": args.seconds,
        "repeats": args.repeats, "warmup": args.warmup,
        "step1": bench_step1(args.config, xs, ilens, args.repeats, args.warmup),
        "step2": bench_step2(args.config, xs, ilens, args.repeats, args.warmup),
        "front_ends": bench_frontends(args.config, xs, ilens, args.repeats, args.warmup),
    }
    res["wall_s"] = time.perf_counter() - start
    res["machine"] = machine_info(args.threads, load)
    return write_result(res, args, f"authors_options_{args.config}", print_table)


if __name__ == "__main__":
    main(sys.argv[1:])
