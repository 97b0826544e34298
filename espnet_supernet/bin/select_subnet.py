#!/usr/bin/env python3
"""Pick the best subnet of a trained supernet that fits a deployment budget, and export it.

Usage:
    python -m espnet_supernet.bin.select_subnet --exp exp/asr_x --max_params 10M
    python -m espnet_supernet.bin.select_subnet --exp exp/asr_x --max_flops 0.25G
    python -m espnet_supernet.bin.select_subnet --exp exp/asr_x --max_latency_ms 40 --threads 2

Budgets: ``--max_params`` (parameters of the deployed model), ``--max_flops`` (encoder
FLOPs per second of audio, the cost model of ``subnet_report``), ``--max_latency_ms``
(encoder + CTC greedy on a fixed 10 s input with ``--threads`` threads: predicted by this
machine's latency model ``<exp>/latency_model_<machine>.json`` when
``espnet_supernet.bin.profile_device`` wrote it, else the median of repeated runs measured
HERE, cached per machine in ``<exp>/latency_<machine>.json``). Absolute
numbers take K/M/G suffixes; a number <= 1 is a fraction of the full model.

Every size is listed with its parameters, FLOPs and latency measured here (FLOPs alone
predict CPU latency badly). Among the trained sizes that fit, the one with the lowest dev WER (then CER; from stage 13's
``score_summary.jsonl``) wins. An OrthoSoftmax supernet can realise any budget: its units
are nested in one learned order, so the largest prefix of that order that fits is selected
(it contains every trained size that fits). The choice is exported like
``espnet_supernet.bin.export`` into ``--outdir``.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.deploy.budget_selection import CRITERIA, select_subnet
from espnet2.utils.types import str2bool


def select(args: argparse.Namespace) -> dict:
    """Choose and (unless ``--export false``) export; returns the decision record."""
    given = [(c, getattr(args, f"max_{c}")) for c in CRITERIA if getattr(args, f"max_{c}")]
    if len(given) != 1:
        raise ValueError("give exactly one budget: --max_params, --max_flops or "
                         "--max_latency_ms")
    criterion, text = given[0]
    return select_subnet(args.exp, criterion, text, model_file=args.asr_model_file,
                         threads=args.threads, dev_set=args.dev_set, outdir=args.outdir,
                         export=args.export, onnx=args.onnx,
                         latency_model=args.latency_model)


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True,
                        help="the supernet's experiment directory (config.yaml, weights, "
                        "score_summary.jsonl)")
    parser.add_argument("--asr_model_file", type=Path, default=None,
                        help="default: valid.loss.ave.bncal.pth, else valid.loss.ave.pth")
    parser.add_argument("--max_params", default=None, help="e.g. 10M, or 0.5 (fraction)")
    parser.add_argument("--max_flops", default=None,
                        help="encoder FLOPs per second of audio, e.g. 1.2G")
    parser.add_argument("--max_latency_ms", default=None,
                        help="milliseconds for 10 s of audio on this machine")
    parser.add_argument("--threads", type=int, default=2, help="threads for --max_latency_ms")
    parser.add_argument("--latency_model", default="auto",
                        help="auto: predict latency with this machine's "
                        "<exp>/latency_model_<machine>.json if profile_device wrote it, else "
                        "measure; a path: predict with that file; none: measure")
    parser.add_argument("--dev_set", default="dev_clean")
    parser.add_argument("--outdir", type=Path, default=None,
                        help="default: <exp>/export/select_<criterion>_<budget>")
    parser.add_argument("--export", type=str2bool, default=True)
    parser.add_argument("--onnx", type=str2bool, default=True)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Select (and export) one subnet."""
    run_cli("select_subnet", get_parser(), cmd, select,
            (FileNotFoundError, TypeError, ValueError))


if __name__ == "__main__":
    main()
