#!/usr/bin/env python3
"""CPU benchmark of the pruned RNN-T loss: peak memory and time of one TODM update at paper
scale, the full loss vs the pruned one, and the batch each would allow on an 80 GB GPU.

Usage:
    .venv/bin/python bench/bench_pruned_rnnt.py [--config PATH] [--vocab 5000]
        [--seconds 15] [--tokens_per_second 3.5] [--batches 1 2] [--threads 2]
        [--repeats 2] [--warmup 1] [--gpu_gb 80] [--quick] [--output PATH]

One update is what the TODM recipe runs at every step of ``conf/train_todm_mhssm_paper.yaml``
(12 x 512 MH-SSM, LSTM prediction network 640, joint 640): forward and backward of the
sandwich (the largest size, the smallest and one random middle size, each with its RNN-T
loss, in-place alpha-divergence KD from the largest) and the ScaledAdam step, on a random
batch of ``--batches`` utterances (lengths from ``--seconds`` down to 0.75 of it) with
``--tokens_per_second`` BPE tokens per second out of ``--vocab`` (LibriSpeech's speaking
rate is about 2.7 words/s, about 3.5 BPE-5000 tokens/s). Two losses, the model otherwise
the same:

- ``full``: ``model_conf.rnnt_loss: scan``, the (B, T, U + 1, V) joint for every size of
  the step (and the KD over it);
- ``pruned``: ``model_conf.rnnt_loss: pruned`` (``train/pruned_rnnt_loss.py``, Kuang et
  al. 2022), the joint on ``prune_range`` (5) symbols per frame, (B, T, 5, V).

Each (loss, batch) runs in a fresh process, so peak memory is that process's own
(``ru_maxrss``); ``step_peak`` is the peak minus the resident memory once the model, the
optimizer and the batch are built, i.e. what the update itself adds (activations, the
lattices, gradients, optimizer state created at the first step). Times are the median of
``--repeats`` updates after ``--warmup``.

Projection to a GPU (an estimate, stated as such in the JSON): the update's tensors are the
same on a GPU as here (fp32, no AMP), so with two batch sizes b1 < b2 the memory per
utterance is ``(step_peak(b2) - step_peak(b1)) / (b2 - b1)`` and the fixed part is the
model's parameters, gradients and two optimizer moments (4 x params x 4 bytes) plus the
rest of ``step_peak(b1)``; the largest batch is what fits in ``--gpu_gb`` GB. CUDA's
caching allocator, its workspace and the CUDA context (about 1 GB) are not counted: the
real limit is somewhat lower. Writes ``bench/results/pruned_rnnt_paper.json``
(``pruned_rnnt_paper_quick.json`` with ``--quick``: the demo config, 2 s, vocabulary 500).
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build_transducer, machine_info, transducer_batch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "egs2/librispeech/supernet/conf"
LOSSES = {"full": {"rnnt_loss": "scan"}, "pruned": {"rnnt_loss": "pruned"}}
QUICK = dict(config=str(CONF / "train_todm_mhssm_demo.yaml"), vocab=500, seconds=2.0,
             repeats=1, warmup=1)
#: The paper config's batch_bins (numel, raw 16 kHz speech) shared by its 4 GPUs.
PAPER_BATCH_BINS, PAPER_GPUS = 16_000_000, 4


def rss_bytes() -> int:
    """Resident memory of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(args: argparse.Namespace, loss: str, batch: int) -> dict:
    """One (loss, batch) in this process: build, warm up, time; memory as documented."""
    torch.set_num_threads(args.threads)
    tokens = ["<blank>", "<unk>"] + [f"t{i}" for i in range(args.vocab - 3)] + ["<sos/eos>"]
    with tempfile.TemporaryDirectory() as tmp:
        model, optimizer = build_transducer(Path(args.config), Path(tmp), tokens,
                                            LOSSES[loss])
    data = transducer_batch(batch, args.seconds, args.tokens_per_second, len(tokens))
    params = sum(p.numel() for p in model.parameters())
    base = rss_bytes()
    times = []
    for i in range(args.warmup + args.repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        value, _, _ = model(**data)
        value.backward()
        optimizer.step()
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1000)
        if not torch.isfinite(value):
            raise RuntimeError(f"{loss} loss is not finite: {value}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.no_grad():
        _, enc_lens = model.encode(data["speech"], data["speech_lengths"])
    return {"loss": loss, "batch": batch, "params": params, "base_rss": base, "peak_rss": peak,
            "step_peak": peak - base, "update_ms": statistics.median(times), "raw_ms": times,
            "max_tokens": int(data["text_lengths"].max()), "loss_value": float(value),
            "frames": int(enc_lens.max())}


def child(args: argparse.Namespace, loss: str, batch: int) -> dict:
    """``measure`` in a fresh Python process (its own peak memory)."""
    argv = [sys.executable, __file__, "--config", args.config, "--vocab", str(args.vocab),
            "--seconds", str(args.seconds), "--tokens_per_second", str(args.tokens_per_second),
            "--threads", str(args.threads), "--repeats", str(args.repeats),
            "--warmup", str(args.warmup), "--child", loss, str(batch)]
    print(f"  {loss} loss, batch {batch} x {args.seconds} s ...", flush=True)
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def project(rows: List[dict], gpu_gb: float) -> dict:
    """Largest batch on a ``gpu_gb`` GB GPU from the first and last batch's step_peak."""
    lo, hi = rows[0], rows[-1]
    per_utt = (hi["step_peak"] - lo["step_peak"]) / (hi["batch"] - lo["batch"])
    param_state = 4 * lo["params"] * 4  # weights, gradients, two optimizer moments (fp32)
    fixed = param_state + lo["step_peak"] - lo["batch"] * per_utt
    return {"bytes_per_utterance": per_utt, "fixed_bytes": fixed,
            "max_batch": int((gpu_gb * 1e9 - fixed) // per_utt) if per_utt > 0 else None}


def run(args: argparse.Namespace) -> dict:
    loadavg_start = os.getloadavg()
    wall = time.perf_counter()
    rows = {loss: [child(args, loss, b) for b in args.batches] for loss in LOSSES}
    res = {
        "config": str(Path(args.config).resolve().relative_to(ROOT)),
        "vocab": args.vocab, "seconds": args.seconds,
        "tokens_per_second": args.tokens_per_second, "batches": args.batches,
        "threads": args.threads, "repeats": args.repeats, "warmup": args.warmup,
        "quick": args.quick, "machine": machine_info(args.threads, loadavg_start),
        "runs": rows,
        "gpu_gb": args.gpu_gb,
        "projection": {loss: project(r, args.gpu_gb) for loss, r in rows.items()},
        "projection_note": "fp32 update as measured on CPU; CUDA context, caching-allocator "
                           "slack and cuDNN/cuBLAS workspaces not counted",
    }
    big = max(args.batches)
    full, pruned = (next(r for r in rows[k] if r["batch"] == big) for k in ("full", "pruned"))
    res["at_batch"] = big
    res["pruned_vs_full_step_peak"] = pruned["step_peak"] / full["step_peak"]
    res["pruned_vs_full_time"] = pruned["update_ms"] / full["update_ms"]
    per_gpu = PAPER_BATCH_BINS / PAPER_GPUS / (16000 * args.seconds)
    res["paper_batch_per_gpu"] = per_gpu  # utterances of --seconds in the config's batch
    res["wall_s"] = time.perf_counter() - wall
    return res


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONF / "train_todm_mhssm_paper.yaml"),
                        help="TODM training config (model: supernet_transducer)")
    parser.add_argument("--vocab", type=int, default=5000, help="token inventory size")
    parser.add_argument("--seconds", type=float, default=15.0, help="longest utterance")
    parser.add_argument("--tokens_per_second", type=float, default=3.5)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2],
                        help="batch sizes to measure (two or more, for the projection)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gpu_gb", type=float, default=80.0)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK}")
    parser.add_argument("--output", default=None, help="JSON path")
    parser.add_argument("--child", nargs=2, metavar=("LOSS", "BATCH"), help=argparse.SUPPRESS)
    return parser


def main(cmd: Optional[List[str]] = None) -> dict:
    args = get_parser().parse_args(cmd)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.child:
        print(json.dumps(measure(args, args.child[0], int(args.child[1]))))
        return {}
    if len(args.batches) < 2:
        sys.exit("bench_pruned_rnnt: --batches needs two or more sizes for the projection")
    res = run(args)
    out = Path(args.output or ROOT / "bench/results" /
               f"pruned_rnnt_paper{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    gb = 1e9
    print(f"{res['config']}, vocabulary {args.vocab}, utterances <= {args.seconds} s, "
          f"{args.threads} threads")
    for loss, rows in res["runs"].items():
        proj = res["projection"][loss]
        for r in rows:
            print(f"  {loss:>6}, batch {r['batch']}: update {r['update_ms'] / 1000:6.1f} s, "
                  f"step peak {r['step_peak'] / gb:6.2f} GB (T {r['frames']}, U {r['max_tokens']})")
        print(f"  {loss:>6}: {proj['bytes_per_utterance'] / gb:.2f} GB per utterance; largest "
              f"batch on {args.gpu_gb:.0f} GB: {proj['max_batch']}")
    print(f"  pruned / full at batch {res['at_batch']}: memory "
          f"{res['pruned_vs_full_step_peak']:.3f}, time {res['pruned_vs_full_time']:.3f}; the "
          f"paper config's batch_bins is about {res['paper_batch_per_gpu']:.0f} such "
          f"utterances per GPU on {PAPER_GPUS} GPUs")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
