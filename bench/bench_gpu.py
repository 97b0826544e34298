#!/usr/bin/env python3
"""The CUDA paths that the CPU-only development machine never runs, checked in one go
(``bench/gpu_check.sh`` calls this on a GPU machine).

Usage:
    .venv/bin/python bench/bench_gpu.py --device cuda [--config paper] [--batch 8]
        [--seconds 15] [--repeats 5] [--output PATH]
    .venv/bin/python bench/bench_gpu.py --device cpu --quick     # a dry run of the code

Checks, each recorded in the JSON with its numbers (a failed check does not stop the
others; the exit status is 1 if any failed):

1. ``frontend``: the supernet's subsampling front end off the CPU (one chunk, the matmul
   first convolution; ``nets/chunked_subsampling.py``) against ESPnet's stock
   ``Conv2dSubsampling`` with the same weights: max |difference| (TF32 off), time of each.
2. ``stock_equality``: the whole supernet encoder at its largest size against ESPnet's
   stock ``ConformerEncoder`` with the same weights on the device (TF32 off): max
   |difference|, time of each (inference).
3. ``sandwich_amp``: sandwich-rule updates of the CTC supernet (``--config``, e.g. the
   paper's 12 x 512) under ``torch.autocast`` fp16 with a ``GradScaler`` (what ESPnet's
   ``--use_amp true`` does): finite losses, time per update, peak device memory.
4. ``todm_pruned``: updates of the TODM paper config (12 x 512 MH-SSM, pruned RNN-T loss,
   in-place KD, ScaledAdam) on the device: finite losses, time, peak memory.

Writes ``bench/results/gpu_check_<device>[_quick].json``. On the GPU machine it should
take under 8 minutes (``--config paper``, batch 8 x 15 s).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    CONFIGS,
    build_encoders,
    build_transducer,
    ctc_supernet,
    machine_info,
    make_batch,
    random_targets,
    transducer_batch,
)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "egs2/librispeech/supernet/conf"
QUICK = dict(config="demo", batch=2, seconds=2.0, repeats=2, warmup=1,
             todm_config=str(CONF / "train_todm_mhssm_demo.yaml"), vocab=100)
DEFAULTS = dict(config="paper", batch=8, seconds=15.0, repeats=5, warmup=2,
                todm_config=str(CONF / "train_todm_mhssm_paper.yaml"), vocab=5000)
TOLERANCE = 1e-4  # max |difference| of fp32 outputs (TF32 off)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device, repeats: int,
           warmup: int) -> List[float]:
    """ms of each of ``repeats`` calls after ``warmup`` (device synchronised)."""
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> Optional[float]:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) \
        if device.type == "cuda" else None


@torch.no_grad()
def check_frontend(args, device: torch.device) -> dict:
    stock, supernet = (m.to(device).eval() for m in build_encoders(args.config))
    xs, ilens = (t.to(device) for t in make_batch(args.batch, args.seconds,
                                                  CONFIGS[args.config].get("input_size", 80)))
    masks = (torch.arange(xs.size(1), device=device)[None] < ilens[:, None])[:, None]

    def ours():
        return supernet.forward_frontend(xs, ilens).xs

    def theirs():
        out = stock.embed(xs, masks)[0]
        return out[0] if isinstance(out, tuple) else out

    diff = (ours() - theirs()).abs().max().item()
    t_ours = _timed(ours, device, args.repeats, args.warmup)
    t_stock = _timed(theirs, device, args.repeats, args.warmup)
    return dict(ok=diff <= TOLERANCE, max_abs_diff=diff, tolerance=TOLERANCE,
                ms=dict(supernet=statistics.median(t_ours), stock=statistics.median(t_stock)),
                supernet_vs_stock=statistics.median(t_ours) / statistics.median(t_stock))


@torch.no_grad()
def check_stock_equality(args, device: torch.device) -> dict:
    stock, supernet = (m.to(device).eval() for m in build_encoders(args.config))
    supernet.set_subnet(supernet.subnet_mask(supernet.subnet_names[-1]))  # every module
    xs, ilens = (t.to(device) for t in make_batch(args.batch, args.seconds,
                                                  CONFIGS[args.config].get("input_size", 80)))
    ours, lens_ours, _ = supernet(xs, ilens)
    theirs, lens_stock, _ = stock(xs, ilens)
    diff = (ours - theirs).abs().max().item()
    t_ours = _timed(lambda: supernet(xs, ilens), device, args.repeats, args.warmup)
    t_stock = _timed(lambda: stock(xs, ilens), device, args.repeats, args.warmup)
    return dict(ok=diff <= TOLERANCE and torch.equal(lens_ours, lens_stock),
                max_abs_diff=diff, tolerance=TOLERANCE,
                ms=dict(supernet=statistics.median(t_ours), stock=statistics.median(t_stock)),
                supernet_vs_stock=statistics.median(t_ours) / statistics.median(t_stock))


def check_sandwich_amp(args, device: torch.device) -> dict:
    model = ctc_supernet(args.config).to(device).train()
    xs, ilens = (t.to(device) for t in make_batch(args.batch, args.seconds,
                                                  CONFIGS[args.config].get("input_size", 80)))
    text, lens = (t.to(device) for t in random_targets(model, xs, ilens))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    losses, state = [], {"step": 0}

    def update() -> None:
        model.sandwich_step.fill_(state["step"])
        state["step"] += 1
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype):
            loss, _, _ = model(xs, ilens, text.clone(), lens)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(float(loss.detach()))

    _peak_reset(device)
    times = _timed(update, device, args.repeats, args.warmup)
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    return dict(ok=finite, autocast_dtype=str(dtype), losses=losses,
                update_ms=statistics.median(times), raw_ms=times, peak_gb=_peak_gb(device),
                params=sum(p.numel() for p in model.parameters()),
                batch=f"{args.batch} x {args.seconds} s")


def check_todm_pruned(args, device: torch.device) -> dict:
    tokens = ["<blank>", "<unk>"] + [f"t{i}" for i in range(args.vocab - 3)] + ["<sos/eos>"]
    with tempfile.TemporaryDirectory() as tmp:
        model, optimizer = build_transducer(Path(args.todm_config), Path(tmp), tokens,
                                            {"rnnt_loss": "pruned"})
    model.to(device).train()
    data = {k: v.to(device) for k, v in transducer_batch(
        args.batch, args.seconds, 3.5, len(tokens)).items()}
    losses = []

    def update() -> None:
        optimizer.zero_grad()
        loss, _, _ = model(**data)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))

    _peak_reset(device)
    times = _timed(update, device, args.repeats, args.warmup)
    finite = all(torch.isfinite(torch.tensor(losses)).tolist())
    return dict(ok=finite, config=str(Path(args.todm_config).relative_to(ROOT)),
                losses=losses, update_ms=statistics.median(times), raw_ms=times,
                peak_gb=_peak_gb(device), params=sum(p.numel() for p in model.parameters()),
                batch=f"{args.batch} x {args.seconds} s", vocab=args.vocab)


CHECKS = {"frontend": check_frontend, "stock_equality": check_stock_equality,
          "sandwich_amp": check_sandwich_amp, "todm_pruned": check_todm_pruned}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the checks) or cpu (dry run)")
    parser.add_argument("--config", choices=sorted(CONFIGS), default=None,
                        help="CTC supernet size (default: paper; --quick: demo)")
    parser.add_argument("--todm_config", default=None, help="TODM recipe config")
    parser.add_argument("--vocab", type=int, default=None, help="TODM token vocabulary")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--checks", nargs="+", choices=sorted(CHECKS), default=list(CHECKS))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--quick", action="store_true", help="demo sizes, short batch")
    parser.add_argument("--output", type=Path, default=None)
    return parser


def main(cmd: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(cmd)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device here; --device cpu --quick runs the code on CPU")
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 equality checks
    torch.backends.cudnn.allow_tf32 = False
    load, start = os.getloadavg(), time.perf_counter()
    res: Dict[str, object] = dict(device=str(device), config=args.config,
                                  batch=args.batch, seconds=args.seconds,
                                  repeats=args.repeats, warmup=args.warmup)
    if device.type == "cuda":
        res["gpu"] = torch.cuda.get_device_name(device)
    checks: Dict[str, dict] = {}
    for name in args.checks:
        t0 = time.perf_counter()
        try:
            checks[name] = CHECKS[name](args, device)
        except Exception as error:  # recorded; the other checks still run
            checks[name] = dict(ok=False, error=f"{type(error).__name__}: {error}",
                                traceback=traceback.format_exc()[-3000:])
        checks[name]["wall_s"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {'ok' if checks[name]['ok'] else 'FAILED'} "
              f"({checks[name]['wall_s']} s) "
              + json.dumps({k: v for k, v in checks[name].items()
                            if k in ("max_abs_diff", "update_ms", "peak_gb", "error")}),
              flush=True)
    res["checks"] = checks
    res["all_ok"] = all(c["ok"] for c in checks.values())
    res["wall_s"] = round(time.perf_counter() - start, 1)
    res["machine"] = machine_info(args.threads, load)
    out = args.output or ROOT / "bench" / "results" / \
        f"gpu_check_{device.type}{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {out}")
    return 0 if res["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
