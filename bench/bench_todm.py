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

- ``one_job``: every one of the K sizes in the same update (the largest, the smallest and
  all K - 2 middle sizes, i.e. ``num_random: K - 2``, so each size gets one update per
  step: the same updates per size as K separate jobs), with in-place alpha-divergence KD
  from the largest size; also without KD (``one_job_no_kd``);
- ``separate:<size>``: one update of a job that trains only that size (no KD), for each
  size; a skipped layer or slice costs nothing, so this is the cost of a model of that
  shape;
- ``sandwich``: the config's own sandwich update (largest, smallest and ``num_random`` of
  the middle sizes, KD): the same number of updates as each separate job, but the
  middle sizes get ``num_random / (K - 2)`` of them.

Goal (issue 7): one_job / sum(separate) <= 0.6 for K = 4. The saving comes from what the
sizes share in one job: feature extraction, SpecAugment, the subsampling front end and
the prediction network run once per update instead of K times. Every time is the median
over ``--repeats`` after ``--warmup``, the variants interleaved (order reversed on odd
repeats); the ratio is the median of per-repeat ratios. Writes
``bench/results/todm_demo.json`` (``todm_demo_quick.json`` with ``--quick``).
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import List, Optional

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_supernet import interleaved, machine_info, median_ratio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "egs2/librispeech/supernet/conf/train_todm_mhssm_demo.yaml"
#: The demo's character units (``--token_type char``).
TOKENS = (["<blank>", "<unk>", "<space>"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
          + ["'", "<sos/eos>"])
GOAL_ONE_JOB_VS_SEPARATE = 0.6
QUICK = dict(batch=2, seconds=2.0, repeats=2, warmup=1)


def build_model(config: Path, tmp: Path):
    """``supernet_transducer`` and its optimizer from a recipe config."""
    from espnet_supernet.tasks.asr import SupernetASRTask

    conf = yaml.safe_load(config.read_text())
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(conf))
    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(path), "--token_list", str(tmp / "tokens.txt"),
        "--output_dir", str(tmp), "--normalize", "none", "--token_type", "char",
    ])  # fmt: skip
    args.token_list = list(TOKENS)
    torch.manual_seed(0)
    model = SupernetASRTask.build_model(args).train()
    optimizer = SupernetASRTask.build_optimizers(args, model)[0]
    return model, optimizer


def make_batch(batch: int, seconds: float, chars_per_second: float, vocab: int):
    """Random speech (16 kHz, descending lengths) and character targets."""
    gen = torch.Generator().manual_seed(0)
    lens = [int(16000 * seconds * (1 - 0.25 * i / max(1, batch - 1))) for i in range(batch)]
    speech = torch.randn(batch, lens[0], generator=gen) * 0.1
    for i, n in enumerate(lens):
        speech[i, n:] = 0
    chars = [max(1, int(n / 16000 * chars_per_second)) for n in lens]
    text = torch.full((batch, max(chars)), -1, dtype=torch.long)
    for i, n in enumerate(chars):
        text[i, :n] = torch.randint(2, vocab - 1, (n,), generator=gen)
    return dict(speech=speech, speech_lengths=torch.tensor(lens), text=text,
                text_lengths=torch.tensor(chars))


def run(args: argparse.Namespace) -> dict:
    import tempfile

    torch.set_num_threads(args.threads)
    loadavg_start = os.getloadavg()
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, optimizer = build_model(Path(args.config), Path(tmp))
    names: List[str] = list(model.subnet_names)
    batch = make_batch(args.batch, args.seconds, args.chars_per_second, len(TOKENS))
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
    items = [("one_job", one_job(True, K), step), ("one_job_no_kd", one_job(False, K), step),
             ("sandwich", one_job(True, min(K, 2 + num_random)), step)]
    items += [(f"separate:{n}", separate(n), step) for n in names]
    times = interleaved(items, args.repeats, args.warmup)
    separate_sum = [sum(ts) for ts in zip(*(times[f"separate:{n}"] for n in names))]
    ratio = median_ratio(times["one_job"], separate_sum)
    ratio_no_kd = median_ratio(times["one_job_no_kd"], separate_sum)
    model.num_random = num_random
    return {
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
        "one_job_ms": statistics.median(times["one_job"]),
        "one_job_no_kd_ms": statistics.median(times["one_job_no_kd"]),
        "separate_ms": {n: statistics.median(times[f"separate:{n}"]) for n in names},
        "separate_sum_ms": statistics.median(separate_sum),
        "one_job_vs_separate": ratio,
        "one_job_no_kd_vs_separate": ratio_no_kd,
        "sandwich_sizes_per_update": min(K, 2 + num_random),
        "sandwich_ms": statistics.median(times["sandwich"]),
        "sandwich_vs_separate": median_ratio(times["sandwich"], separate_sum),
        "goal": GOAL_ONE_JOB_VS_SEPARATE,
        "goal_met": ratio <= GOAL_ONE_JOB_VS_SEPARATE,
        "wall_s": time.perf_counter() - wall,
        "raw_ms": times,
    }


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
    print(f"  one job, all sizes + KD: {res['one_job_ms']:7.0f} ms: ratio "
          f"{res['one_job_vs_separate']:.3f} (goal <= {GOAL_ONE_JOB_VS_SEPARATE}) "
          f"{'yes' if res['goal_met'] else 'NO'}")
    print(f"  one job without KD:      {res['one_job_no_kd_ms']:7.0f} ms: ratio "
          f"{res['one_job_no_kd_vs_separate']:.3f}")
    print(f"  config's sandwich ({res['sandwich_sizes_per_update']} sizes per update, KD): "
          f"{res['sandwich_ms']:7.0f} ms: ratio {res['sandwich_vs_separate']:.3f} "
          "(middle sizes get fewer updates)")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
