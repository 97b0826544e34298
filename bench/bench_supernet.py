#!/usr/bin/env python3
"""CPU benchmark of the Conformer supernet: overhead vs stock, subnet speed, sandwich step.

Usage:
    .venv/bin/python bench/bench_supernet.py [--config {demo,paper,stock12x256}]
        [--threads 2] [--batch 4] [--seconds 6] [--repeats 7] [--warmup 2]
        [--train-repeats N] [--seed 0] [--clock {wall,cpu}] [--quick] [--output PATH]

    .venv/bin/python bench/bench_supernet.py --config demo --quick   # ~20 s smoke run

One run measures, on the same random batch (``--batch`` x ``--seconds`` s of features of
the config's input size: 40 mel bins for demo, as its recipe config, else 80;
100 frames/s, descending lengths):

1. stock ``ConformerEncoder`` vs ``SupernetConformerEncoder`` loaded with the same weights
   (full network): time ratio ``full_vs_stock`` (goal <= 1.03) and max |output difference|;
2. every named size's full forward (``encoder(xs, ilens)``) as a fraction of the full
   network's time, vs its FLOPs fraction (``subnet_flops_per_second``), and the front end
   alone (``forward_frontend``), which every size pays (goal per size:
   time_fraction <= flops_fraction + 0.05);
3. one sandwich training step of ``SupernetASRModel`` (CTC only, Adam; max, min and one
   middle size) vs the sum of three single-subnet training steps (goal: ratio < 1.0);
4. with ``--components``: the encoder gets 4 FFN chunks and prunable heads, and component
   subnets (the first 1/4, 1/2, 3/4 of every FFN's chunks and every block's heads, and an
   irregular mix, conv modules kept) are timed like the sizes against their FLOPs
   fraction from the cost model (``subnet_cost.flops_table``), goal the same;
   ``--selection_yaml exp/.../selection.yaml`` (repeatable) adds the subnets a trained
   OrthoSoftmax run selected (same layout as the config's).

Forward timings use eval mode and ``torch.inference_mode()``; every number is the median
over ``--repeats`` after ``--warmup`` runs, the compared variants interleaved within each
repeat (order reversed on odd repeats) so that drift from other load cancels; the full
network also runs between every two variants, and each variant's ratio to full is the
median over repeats of its time over the mean of the two full runs around it. Writes one JSON file (default
``bench/results/supernet_<config>.json``, ``..._quick.json`` with ``--quick``) and prints a
table. This is a benchmark, not a unit test: it never fails on a missed goal.
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    CLOCKS,
    COMMON,
    CONFIGS,
    DEFAULTS,
    FRAMES_PER_SECOND,
    QUICK,
    build_encoders,
    component_masks,
    interleaved,
    machine_info,
    make_batch,
    median_ratio,
    set_clock,
)

VOCAB = 300
TOKENS_PER_UTT = 20
GOAL_FULL_VS_STOCK = 1.03
GOAL_TIME_SLACK = 0.05
GOAL_SANDWICH_VS_SEPARATE = 1.0
MATCH_TOL = 1e-4
BUSY_LIMIT = 0.2  # warn when other jobs use more than this share of the cores


# ---------------------------------------------------------------------- builders
def selected_masks(path: Path, supernet) -> Dict[str, List[int]]:
    """``{<exp>:<size>: unit mask}`` from a trained run's ``selection.yaml``."""
    import yaml

    summary = yaml.safe_load(Path(path).read_text())
    tag = Path(path).parent.name.replace("asr_train_supernet_conformer_", "")
    masks = {}
    for name, row in summary["sizes"].items():
        if len(row["mask"]) not in (supernet.num_units, supernet.num_modules):
            raise SystemExit(f"{path}: masks of {len(row['mask'])} units do not fit the "
                             f"{supernet.num_units}-unit bench encoder (use --components "
                             "and the config the run used)")
        masks[f"{tag}:{name}"] = supernet.layout.as_units(row["mask"])
    return masks


def make_targets(batch: int, out_frames: int, gen: torch.Generator):
    """Random token ids (no blank 0, no <sos/eos>) of ~20 tokens per utterance."""
    top = max(2, min(TOKENS_PER_UTT + 4, out_frames // 3))
    lens = torch.randint(max(1, top - 8), top + 1, (batch,), generator=gen)
    text = torch.full((batch, int(lens.max())), -1, dtype=torch.long)
    for b, n in enumerate(lens.tolist()):
        text[b, :n] = torch.randint(1, VOCAB - 1, (n,), generator=gen)
    return text, lens


@torch.no_grad()
def frontend_flops_per_second(encoder, seconds: float) -> float:
    """FLOPs/s of ``forward_frontend`` alone, same convention as ``subnet_cost``."""
    was_training = encoder.training
    encoder.eval()
    frames = int(round(seconds * FRAMES_PER_SECOND))
    xs = torch.randn(1, frames, encoder.input_size)
    from espnet_supernet.nets.subnet_cost import flop_counter

    counter = flop_counter()
    with counter:
        encoder.forward_frontend(xs, torch.tensor([frames]))
    encoder.train(was_training)
    return counter.get_total_flops() / seconds


# ---------------------------------------------------------------------- benchmarks
def bench_forward(stock, supernet, xs, ilens, repeats: int, warmup: int,
                  extra: Optional[Dict[str, List[int]]] = None) -> dict:
    """Stock vs full supernet, the front end, every named size and the ``extra`` unit
    masks (eval, inference)."""
    stock.eval()
    supernet.eval()
    names = list(supernet.subnet_names)
    noop = lambda: None  # noqa: E731

    def use(name: Optional[str]) -> Callable[[], None]:
        if name is None:
            return lambda: supernet.set_subnet(None)
        return lambda: supernet.set_named_subnet(name)

    with torch.inference_mode():
        ref = stock(xs, ilens)[0]
        supernet.set_subnet(None)
        diff = (supernet(xs, ilens)[0] - ref).abs().max().item()
        supernet.set_named_subnet(names[-1])  # the largest size, own BN slot
        if sum(supernet.subnet_mask(names[-1])) == supernet.num_modules:
            diff = max(diff, (supernet(xs, ilens)[0] - ref).abs().max().item())

        items = [
            ("stock", noop, lambda: stock(xs, ilens)),
            ("full", use(None), lambda: supernet(xs, ilens)),
            ("frontend", noop, lambda: supernet.forward_frontend(xs, ilens)),
        ]
        items += [(f"size:{n}", use(n), lambda: supernet(xs, ilens)) for n in names]
        items += [(f"size:{n}", lambda m=m: supernet.set_subnet(m), lambda: supernet(xs, ilens))
                  for n, m in (extra or {}).items()]
        times = interleaved(items, repeats, warmup, reference="full")
    supernet.set_subnet(None)
    return {"times": times, "max_abs_diff": diff}


def bench_train_step(supernet, xs, ilens, repeats: int, warmup: int, seed: int) -> dict:
    """Sandwich step vs the sum of single-subnet steps for the same subnets."""
    from espnet2.asr.ctc import CTC

    from espnet_supernet.train.supernet_asr_model import SupernetASRModel

    token_list = ["<blank>"] + [f"t{i}" for i in range(1, VOCAB - 1)] + ["<sos/eos>"]
    model = SupernetASRModel(
        vocab_size=VOCAB, token_list=token_list, frontend=None, specaug=None,
        normalize=None, preencoder=None, encoder=supernet, postencoder=None,
        decoder=None, ctc=CTC(VOCAB, supernet.output_size()), joint_network=None,
        ctc_weight=1.0, num_random=1, sandwich_seed=seed,
    )
    model.train()
    optim = torch.optim.Adam(model.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out_frames = int(supernet.forward_frontend(xs, ilens).masks.sum(-1).min())
    text, text_lens = make_targets(xs.size(0), out_frames, gen)
    plan = model.sandwich_plan(0)
    names = [name for _, name, _ in plan]

    def sandwich() -> None:
        model.sandwich_step.zero_()  # always sandwich_plan(0): the same subnets
        optim.zero_grad(set_to_none=True)
        loss, _, _ = model(xs, ilens, text.clone(), text_lens)
        loss.backward()
        optim.step()

    def single(name: str) -> None:
        # What a model with only this subnet would do: its own front end, loss, step.
        # Parameters the subnet does not use get no gradient, so Adam skips them.
        optim.zero_grad(set_to_none=True)
        model.set_subnet(name)
        enc_out, enc_lens, _ = model.encoder(xs, ilens)
        loss, _ = model._subnet_loss(enc_out, enc_lens, text, text_lens)
        loss.backward()
        optim.step()
        model.set_subnet(None)

    def separate() -> None:
        for name in names:
            single(name)

    def reseed() -> None:
        torch.manual_seed(seed)

    times = interleaved([("sandwich", reseed, sandwich), ("separate", reseed, separate)],
                        repeats, warmup)
    return {"times": times, "plan": names, "tokens_per_utt": text_lens.tolist()}


# ---------------------------------------------------------------------- report
def cpu_busy_fraction(interval: float = 0.5) -> Optional[float]:
    """Share of all cores' time spent non-idle during ``interval`` s (before we start)."""

    def sample() -> Tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return None if total <= 0 else 1.0 - (idle1 - idle0) / total


def run(args: argparse.Namespace) -> dict:
    set_clock(args.clock)
    loadavg_start = os.getloadavg()
    busy_fraction = cpu_busy_fraction()
    busy = busy_fraction is not None and busy_fraction > BUSY_LIMIT
    if busy:
        print(f"warning: other jobs keep {busy_fraction:.0%} of the {os.cpu_count()} cores "
              "busy: wall-clock timings will be unreliable (rerun on an idle machine, or "
              "use --threads 1 --clock cpu)", file=sys.stderr)
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    wall = time.perf_counter()

    phases: Dict[str, float] = {}
    tick = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        phases[name] = now - tick
        tick = now

    stock, supernet = build_encoders(args.config, args.components)
    xs, ilens = make_batch(args.batch, args.seconds, supernet.input_size)
    masks = {n: supernet.subnet_mask(n) for n in supernet.subnet_names}
    extra = component_masks(supernet, args.seed) if args.components else {}
    for path in args.selection_yaml:
        extra.update(selected_masks(path, supernet))
    masks.update(extra)
    names = list(masks)

    # FLOPs (batch 1, an utterance of --seconds, per second of audio): the cost model,
    # checked against FlopCounterMode on the real forward.
    from espnet_supernet.nets.subnet_cost import (
        flops_table,
        measured_flops_per_second,
        params_table,
    )

    flops, params = flops_table(supernet, args.seconds), params_table(supernet)
    full_flops = flops.total
    front_flops = frontend_flops_per_second(supernet, args.seconds)
    size_flops = {n: flops.subnet(m) for n, m in masks.items()}
    model_vs_counted = max(
        abs(size_flops[n] / measured_flops_per_second(supernet, m, args.seconds) - 1)
        for n, m in masks.items())
    phase("build_and_flops")

    fwd = bench_forward(stock, supernet, xs, ilens, args.repeats, args.warmup, extra)
    t = fwd["times"]
    med = {key: statistics.median(v) for key, v in t.items()}
    phase("forward")

    sizes = {}
    for name in names:
        mask = masks[name]
        flops = size_flops[name]
        time_fraction = median_ratio(t[f"size:{name}"], t[f"full@size:{name}"])
        flops_fraction = flops / full_flops
        sizes[name] = {
            "modules": sum(supernet.layout.modules_of(mask)),
            "units": sum(mask),
            "params": int(params.subnet(mask)),
            "gflops_per_sec": flops / 1e9,
            "flops_fraction": flops_fraction,
            "ms": med[f"size:{name}"],
            "time_fraction": time_fraction,
            "goal_met": time_fraction <= flops_fraction + GOAL_TIME_SLACK,
        }

    train = bench_train_step(supernet, xs, ilens, args.train_repeats, args.warmup,
                             args.seed)
    tt = train["times"]
    phase("train")
    ratio = median_ratio(tt["sandwich"], tt["separate"])
    train_step = {
        "subnets": train["plan"],
        "sandwich_ms": statistics.median(tt["sandwich"]),
        "separate_sum_ms": statistics.median(tt["separate"]),
        "sandwich_vs_separate": ratio,
        "goal_met": ratio < GOAL_SANDWICH_VS_SEPARATE,
        "repeats": args.train_repeats,
    }

    full_vs_stock = median_ratio(t["full@stock"], t["stock"])
    outputs_match = fwd["max_abs_diff"] <= MATCH_TOL
    goals = {
        "full_vs_stock": full_vs_stock <= GOAL_FULL_VS_STOCK,
        "outputs_match": outputs_match,
        "sizes": all(s["goal_met"] for s in sizes.values()),
        "train_step": train_step["goal_met"],
    }
    machine = machine_info(args.threads, loadavg_start)
    return {
        "config": args.config,
        "encoder": {**COMMON, **CONFIGS[args.config], "subnet_rule": "layers",
                    **(dict(ffn_chunks=4, prune_heads=True) if args.components else {})},
        "components": args.components,
        "flops_model_max_rel_error": model_vs_counted,
        "machine": machine,
        "threads": args.threads,
        "batch": args.batch,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "seed": args.seed,
        "clock": args.clock,
        "cpu_busy_fraction_before": busy_fraction,
        "busy_at_start": busy,
        "quick": args.quick,
        "stock_ms": med["stock"],
        "full_ms": med["full"],
        "full_vs_stock": full_vs_stock,
        "max_abs_diff": fwd["max_abs_diff"],
        "outputs_match": outputs_match,
        "frontend_ms": med["frontend"],
        "frontend_time_fraction": median_ratio(t["frontend"], t["full@frontend"]),
        "frontend_gflops_per_sec": front_flops / 1e9,
        "frontend_flops_fraction": front_flops / full_flops,
        "full_gflops_per_sec": full_flops / 1e9,
        "sizes": sizes,
        "train_step": train_step,
        "goals": goals,
        "goals_met": all(goals.values()),
        "wall_s": time.perf_counter() - wall,
        "phase_s": phases,
        "raw_ms": {**t, **{f"train:{k}": v for k, v in tt.items()}},
    }


def print_table(res: dict) -> None:
    m = res["machine"]
    print(f"config {res['config']}: batch {res['batch']} x {res['seconds']:g} s, "
          f"{res['threads']} threads, {m['nproc']} cores, load "
          f"{m['loadavg_start'][0]:.2f}->{m['loadavg_end'][0]:.2f}, "
          f"median of {res['repeats']}, {res['clock']} clock")
    ok = lambda b: "yes" if b else "NO"  # noqa: E731
    print(f"stock {res['stock_ms']:.1f} ms, supernet full {res['full_ms']:.1f} ms: "
          f"full_vs_stock {res['full_vs_stock']:.3f} (goal <= {GOAL_FULL_VS_STOCK}) "
          f"{ok(res['goals']['full_vs_stock'])}; max_abs_diff {res['max_abs_diff']:.2e}")
    print(f"FLOPs cost model vs FlopCounterMode: max relative error "
          f"{res['flops_model_max_rel_error']:.2e}")
    width = max([16] + [len(n) for n in res["sizes"]])
    print(f"{'size':>{width}} {'modules':>7} {'Mparams':>8} {'GFLOP/s':>8} {'ms':>8} "
          f"{'flops_fr':>8} {'time_fr':>8} goal")
    print(f"{'frontend':>{width}} {'-':>7} {'-':>8} {res['frontend_gflops_per_sec']:8.2f} "
          f"{res['frontend_ms']:8.1f} {res['frontend_flops_fraction']:8.3f} "
          f"{res['frontend_time_fraction']:8.3f}    -")
    for name, s in res["sizes"].items():
        print(f"{name:>{width}} {s['modules']:7d} {s['params'] / 1e6:8.2f} "
              f"{s['gflops_per_sec']:8.2f} {s['ms']:8.1f} {s['flops_fraction']:8.3f} "
              f"{s['time_fraction']:8.3f} {ok(s['goal_met'])}")
    ts = res["train_step"]
    print(f"train step ({'+'.join(ts['subnets'])}): sandwich {ts['sandwich_ms']:.0f} ms, "
          f"separate sum {ts['separate_sum_ms']:.0f} ms: sandwich_vs_separate "
          f"{ts['sandwich_vs_separate']:.3f} (goal < 1.0) {ok(ts['goal_met'])}")
    print(f"goals_met: {res['goals_met']}  ({res['wall_s']:.0f} s)")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="stock12x256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=None,
                        help=f"utterances (default {DEFAULTS['batch']}, quick "
                             f"{QUICK['batch']})")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"seconds per utterance, 100 frames/s (default "
                             f"{DEFAULTS['seconds']:g}, quick {QUICK['seconds']:g})")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"timed runs, median reported (default {DEFAULTS['repeats']}, "
                             f"quick {QUICK['repeats']})")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed runs first (default {DEFAULTS['warmup']}, quick "
                             f"{QUICK['warmup']})")
    parser.add_argument("--train-repeats", type=int, default=None,
                        help="timed training steps (default: --repeats; quick "
                             f"{QUICK['train_repeats']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: perf_counter (the real numbers); cpu: process CPU time, "
                             "less sensitive to other load (use with --threads 1)")
    parser.add_argument("--components", action="store_true",
                        help="4 FFN chunks and prunable heads; also time component subnets")
    parser.add_argument("--selection_yaml", type=Path, action="append", default=[],
                        help="time the sizes of a trained run's selection.yaml too")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: smaller batch, shorter input, fewer repeats")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON path (default bench/results/supernet_<config>"
                             "[_components][_quick].json)")
    return parser


def main(cmd: Optional[List[str]] = None) -> dict:
    args = get_parser().parse_args(cmd)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.train_repeats is None:
        args.train_repeats = args.repeats
    if min(args.repeats, args.train_repeats) < 1 or args.warmup < 0 or args.batch < 1:
        raise SystemExit("--repeats/--train-repeats/--batch must be >= 1, --warmup >= 0")
    if args.output is None:
        suffix = ("_components" if args.components else "") + ("_quick" if args.quick else "")
        args.output = (Path(__file__).resolve().parent / "results"
                       / f"supernet_{args.config}{suffix}.json")
    res = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2) + "\n")
    print_table(res)
    print(f"wrote {args.output}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
