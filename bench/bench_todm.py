#!/usr/bin/env python3
"""CPU benchmark of TODM training cost: K sizes in one job vs K separate jobs.

Usage:
    .venv/bin/python bench/bench_todm.py [--config PATH] [--threads 2] [--batch 12]
        [--seconds 4] [--chars_per_second 14] [--repeats 5] [--warmup 2] [--quick]
        [--output PATH]

TODM (Shangguan et al., 2023) trains every size of an RNN-T supernet in one job. This
measures, on the same random batch, one training update (forward, backward, ScaledAdam
step) of ``model: supernet_transducer`` built from the recipe config (default
``egs2/librispeech/supernet/conf/train_todm_mhssm_demo.yaml``, character units):

- ``todm_job``: the update the recipe's TODM job runs at every step: the config's own
  sandwich (the largest size, the smallest and ``num_random`` middle sizes; 3 of the 4 demo
  sizes), with in-place alpha-divergence KD from the largest;
- ``separate:<size>``: one update of a job that trains only that size (no KD), for each
  size; a skipped layer or slice costs nothing, so this is the cost of a model of that
  shape;
- ``all_sizes``: every one of the K sizes in every update (``num_random: K - 2``), with KD
  and without (``all_sizes_no_kd``): a stricter variant in which each size also gets its
  own loss term at every step.

Goal (issue 7, TODM trains all sizes "at about the GPU-hours of one job"): the TODM job
costs <= 0.6 of K = 4 separate jobs with the same number of updates, i.e.
todm_job / sum(separate) <= 0.6. The saving comes from what the sizes share in one job
(feature extraction, SpecAugment, the subsampling front end and the prediction network run
once per update) and from the sandwich rule (a middle size's loss enters every
``(K - 2) / num_random``-th update on average, while every update changes its shared
weights). ``--exp_dir`` adds the same ratio measured on the recipe's runs
(``local/compare_todm.sh``): the sum over epochs of ESPnet's mean ``train_time`` per update
x updates, TODM job vs the four ``_alone_<size>`` jobs (those ran at 1 thread, at times
beside another job: noisier than this benchmark). Every time is the median
over ``--repeats`` after ``--warmup``, the variants interleaved (order reversed on odd
repeats); the ratio is the median of per-repeat ratios. Writes
``bench/results/todm_demo.json`` (``todm_demo_quick.json`` with ``--quick``).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    build_transducer,
    interleaved,
    machine_info,
    median_ratio,
    transducer_batch,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "egs2/librispeech/supernet/conf/train_todm_mhssm_demo.yaml"
#: The demo's character units (``--token_type char``).
TOKENS = (["<blank>", "<unk>", "<space>"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
          + ["'", "<sos/eos>"])
GOAL_TODM_VS_SEPARATE = 0.6
RECIPE_TAG = "asr_train_todm_mhssm_demo"
EPOCH_RESULTS = re.compile(r"(?P<epoch>\d+)epoch results: \[train\] .*?"
                           r"train_time=(?P<train_time>[\d.]+), .*?total_count=(?P<total>\d+)")
QUICK = dict(batch=2, seconds=2.0, repeats=2, warmup=1)


def run(args: argparse.Namespace) -> dict:
    import tempfile

    torch.set_num_threads(args.threads)
    loadavg_start = os.getloadavg()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, optimizer = build_transducer(Path(args.config), Path(tmp), TOKENS)
    names: List[str] = list(model.subnet_names)
    batch = transducer_batch(args.batch, args.seconds, args.chars_per_second, len(TOKENS))
    full_plan, kd_weight, num_random = model.plan, model.kd_weight, model.num_random

    def step() -> None:
        optimizer.zero_grad()
        loss, _, _ = model(**batch)
        loss.backward()
        optimizer.step()

    def one_job(kd: bool, sizes_per_update: int):
        def prepare() -> None:
            model.plan, model.kd_weight = full_plan, (kd_weight if kd else 0.0)
            model.num_random = sizes_per_update - 2
        return prepare

    def separate(name: str):
        def prepare() -> None:
            model.plan, model.kd_weight = (lambda s: [("max", name, 1.0)]), 0.0
        return prepare

    K = len(names)
    todm_sizes = min(K, 2 + num_random)
    items = [("todm_job", one_job(True, todm_sizes), step),
             ("all_sizes", one_job(True, K), step),
             ("all_sizes_no_kd", one_job(False, K), step)]
    items += [(f"separate:{n}", separate(n), step) for n in names]
    times = interleaved(items, args.repeats, args.warmup)
    separate_sum = [sum(ts) for ts in zip(*(times[f"separate:{n}"] for n in names))]
    ratio = median_ratio(times["todm_job"], separate_sum)
    model.num_random = num_random
    res = {
        "config": str(Path(args.config).relative_to(ROOT)),
        "sizes": {n: model.encoder.subnet_params(model.encoder.subnets[n]) for n in names},
        "K": K,
        "batch": args.batch,
        "seconds": args.seconds,
        "chars_per_second": args.chars_per_second,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "quick": args.quick,
        "machine": machine_info(args.threads, loadavg_start),
        "todm_job_sizes_per_update": todm_sizes,
        "todm_job_ms": statistics.median(times["todm_job"]),
        "separate_ms": {n: statistics.median(times[f"separate:{n}"]) for n in names},
        "separate_sum_ms": statistics.median(separate_sum),
        "todm_job_vs_separate": ratio,
        "all_sizes_ms": statistics.median(times["all_sizes"]),
        "all_sizes_vs_separate": median_ratio(times["all_sizes"], separate_sum),
        "all_sizes_no_kd_ms": statistics.median(times["all_sizes_no_kd"]),
        "all_sizes_no_kd_vs_separate": median_ratio(times["all_sizes_no_kd"], separate_sum),
        "goal": GOAL_TODM_VS_SEPARATE,
        "goal_met": ratio <= GOAL_TODM_VS_SEPARATE,
        "raw_ms": times,
    }
    if args.exp_dir is not None:
        res["recipe_runs"] = recipe_run_cost(Path(args.exp_dir), names)
    res["wall_s"] = time.perf_counter() - wall
    return res


def epoch_train_seconds(exp: Path) -> Dict[int, float]:
    """Per epoch of an ESPnet training run: mean ``train_time`` per update x the epoch's
    updates, from the "Nepoch results" lines of ``train*.log`` (a resumed run: the last log
    of each epoch; ``total_count`` counts updates from the start)."""
    found: Dict[int, tuple] = {}
    for log in sorted(exp.glob("train*.log"), key=lambda p: p.stat().st_mtime):
        for line in log.read_text(errors="replace").splitlines():
            m = EPOCH_RESULTS.search(line)
            if m:
                found[int(m["epoch"])] = (float(m["train_time"]), int(m["total"]))
    seconds, previous = {}, 0
    for epoch in sorted(found):
        per_update, total = found[epoch]
        seconds[epoch], previous = per_update * (total - previous), total
    return seconds


def recipe_run_cost(exp_dir: Path, names: List[str]) -> dict:
    """The TODM job's training time vs the sum of the ``_alone_<size>`` jobs'."""
    runs = {"todm_job": exp_dir / f"{RECIPE_TAG}"}
    runs.update({n: exp_dir / f"{RECIPE_TAG}_alone_{n}" for n in names})
    per_run = {}
    for key, path in runs.items():
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no such run; run local/compare_todm.sh "
                                    "(RUNS='todm alone') first")
        per_run[key] = epoch_train_seconds(path)
    epochs = {len(e) for e in per_run.values()}
    if len(epochs) != 1 or not epochs.pop():
        raise ValueError(f"runs under {exp_dir} have different or no finished epochs: "
                         + ", ".join(f"{k}: {len(v)}" for k, v in per_run.items()))
    totals = {k: sum(v.values()) for k, v in per_run.items()}
    separate = sum(totals[n] for n in names)
    return {"exp_dir": str(exp_dir), "train_seconds": totals, "separate_sum_s": separate,
            "todm_job_vs_separate": totals["todm_job"] / separate}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG),
                        help="TODM training config (model: supernet_transducer)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=12, help="utterances per update")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="longest utterance; the others down to 0.75 of it")
    parser.add_argument("--chars_per_second", type=float, default=14.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--exp_dir", default=None,
                        help="recipe exp/ with the TODM and _alone_<size> runs: also report "
                             "their training-time ratio")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK}")
    parser.add_argument("--output", default=None, help="JSON path")
    return parser


def main(cmd: Optional[List[str]] = None) -> dict:
    args = get_parser().parse_args(cmd)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    res = run(args)
    out = Path(args.output or ROOT / "bench/results" /
               f"todm_demo{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"K = {res['K']} sizes, batch {args.batch} x <= {args.seconds} s, "
          f"{args.threads} threads, median of {args.repeats}")
    for n, ms in res["separate_ms"].items():
        print(f"  separate job, size {n:>10} ({res['sizes'][n] / 1e6:.2f}M enc params): "
              f"{ms:7.0f} ms/update")
    print(f"  sum of separate jobs: {res['separate_sum_ms']:7.0f} ms")
    print(f"  TODM job ({res['todm_job_sizes_per_update']} sizes per update, KD): "
          f"{res['todm_job_ms']:7.0f} ms: ratio {res['todm_job_vs_separate']:.3f} "
          f"(goal <= {GOAL_TODM_VS_SEPARATE}) {'yes' if res['goal_met'] else 'NO'}")
    print(f"  all {res['K']} sizes per update, KD: {res['all_sizes_ms']:7.0f} ms: ratio "
          f"{res['all_sizes_vs_separate']:.3f}; without KD {res['all_sizes_no_kd_ms']:7.0f} "
          f"ms: {res['all_sizes_no_kd_vs_separate']:.3f}")
    if "recipe_runs" in res:
        runs = res["recipe_runs"]
        print(f"  recipe runs: TODM job {runs['train_seconds']['todm_job']:.0f} s of "
              f"training vs {runs['separate_sum_s']:.0f} s for the separate jobs: ratio "
              f"{runs['todm_job_vs_separate']:.3f}")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
