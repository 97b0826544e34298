#!/usr/bin/env python3
"""How well the per-device latency predictor (``espnet_supernet.bin.profile_device``)
predicts measured latency, against predicting it from FLOPs.

Usage:
    .venv/bin/python bench/bench_latency_predictor.py [--config CONF] [--quick] \\
        [--threads 2] [--lengths 5 10] [--num_random 24] [--validate 20] [--repeats 5]

Builds the supernet of a recipe training config (default: the OrthoSoftmax component-wise
demo, 6 x 144 with 4 FFN chunks and 4 heads per module; random weights: latency does not
depend on their values), profiles ``--num_random`` random component subnets on this
machine (exported, encoder + CTC greedy, batch 1, fp32 and int8) and fits the predictor,
then measures every named size and ``--validate`` other random subnets and compares with
(a) the predictor, (b) FLOPs: the full model's measured latency times the subnet's FLOPs
fraction (the cost model of ``subnet_cost``). Goal: within 10 % for 90 % of the held-out
subnets. Writes ``bench/results/latency_predictor_<config stem>[_quick].json``. Run it on
an idle machine (wall times). A benchmark, not a test: it never fails.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = (REPO / "egs2/librispeech/supernet/conf"
                  / "train_supernet_conformer_demo_ortho_softmax.yaml")
QUICK = dict(lengths=[1.0, 2.0], num_random=10, validate=3, repeats=2)
DEFAULTS = dict(lengths=[5.0, 10.0], num_random=24, validate=20, repeats=5)
TOKENS = ["<blank>", "<unk>", *"abcdefghijklmnopqrstuvwxyz'", "<space>", "<sos/eos>"]


def build(config: Path, workdir: Path):
    """(supernet, config dict) of a training config, built by the task as ``asr_train``
    would (no normalisation, a character token list); a learned selection's sizes take
    the masks of its initial scores."""
    from espnet_supernet.tasks.asr import SupernetASRTask

    tokens = workdir / "tokens.txt"
    tokens.write_text("\n".join(TOKENS) + "\n")
    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(config), "--token_list", str(tokens), "--output_dir",
        str(workdir / "exp"), "--normalize", "none"])
    torch.manual_seed(0)
    model = SupernetASRTask.build_model(args).eval()
    selection = getattr(model, "selection", None)
    if selection is not None and selection.learned:
        model.encoder.set_subnet_masks(selection.masks())
    return model, vars(args)


def main(cmd: Optional[List[str]] = None) -> dict:
    from espnet_supernet.deploy.latency_model import (
        error_summary,
        named_and_random,
        profile_device,
        validate,
    )
    from espnet_supernet.nets.subnet_cost import flops_table

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", type=float, nargs="+", default=None)
    parser.add_argument("--num_random", type=int, default=None)
    parser.add_argument("--validate", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="short inputs, few subnets")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(cmd)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    load, start = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        supernet, config = build(args.config, Path(tmp))
    model = profile_device(supernet, config, args.lengths, threads=args.threads,
                           num_random=args.num_random, repeats=args.repeats)
    result = validate(model, supernet, config, args.validate, args.repeats, seed=1)

    # FLOPs as the predictor: the full model's measured latency times the FLOPs fraction
    flops = flops_table(supernet.encoder)
    masks = {label: mask for label, mask, _ in named_and_random(supernet, args.validate, seed=1)}
    full = supernet.subnet_names[-1]
    measured = {(r["subnet"], r["dtype"], r["seconds"]): r["measured_ms"]
                for r in result["rows"]}
    flops_errors: Dict[str, List[float]] = {}
    for row in result["rows"]:
        if not row["held_out"] or row["subnet"] == full:
            continue
        fraction = flops.subnet(masks[row["subnet"]]) / flops.total
        guess = measured[(full, row["dtype"], row["seconds"])] * fraction
        row["flops_predicted_ms"] = round(guess, 3)
        flops_errors.setdefault(row["dtype"], []).append(
            (guess - row["measured_ms"]) / row["measured_ms"])
    res = dict(
        config=str(args.config.relative_to(REPO) if args.config.is_relative_to(REPO)
                   else args.config),
        layout=model.layout, lengths=args.lengths, threads=args.threads,
        num_random=args.num_random, validate=args.validate, repeats=args.repeats,
        coefficients_ms=model.coefficients,
        predictor=result["summary"],
        flops_fraction={d: error_summary(e) for d, e in flops_errors.items()},
        goal="within 10 % for 90 % of the held-out subnets",
        goal_met={d: s["within_10pct"] >= 0.9 for d, s in result["summary"].items()},
        rows=result["rows"], profiled=model.profiled)
    res["wall_s"] = round(time.perf_counter() - start, 1)
    res["machine"] = machine_info(args.threads, load)
    stem = f"latency_predictor_{args.config.stem.replace('train_supernet_conformer_', '')}"
    out = args.output or (REPO / "bench" / "results"
                          / f"{stem}{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    for dtype, row in res["predictor"].items():
        base = res["flops_fraction"].get(dtype, {})
        print(f"{dtype}: predictor |error| median {100 * row['median_abs_error']:.1f} %, "
              f"p90 {100 * row['p90_abs_error']:.1f} %, within 10 %: "
              f"{100 * row['within_10pct']:.0f} % of {row['measurements']}; FLOPs fraction: "
              f"median {100 * base.get('median_abs_error', float('nan')):.1f} %, within 10 %: "
              f"{100 * base.get('within_10pct', float('nan')):.0f} %")
    print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
