#!/usr/bin/env python3
"""Profile this machine once, then predict any subnet's latency without running it.

Usage:
    python -m espnet_supernet.bin.profile_device --exp exp/asr_x [--threads 2] \\
        [--lengths 5 10] [--dtypes fp32 int8] [--num_random 24] [--validate 20] \\
        [--frontend_widths 64 128]

Measures ``--num_random`` random component subnets of the supernet in ``--exp``, each
exported (physically smaller) and run as encoder + CTC greedy on one utterance per
``--lengths`` (batch 1, ``--threads`` threads, fp32 and dynamic int8), and fits each unit
type's latency (espnet_supernet.deploy.latency_model). Then (``--validate N``) compares
predicted with measured latency for every named size and N other random subnets and
reports the error distribution. Writes ``<exp>/latency_model_<machine>.json``, which
``select_subnet --max_latency_ms`` uses from then on. Run it on the deployment machine,
with nothing else running (the measurements are wall times).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.deploy.budget_selection import default_model_file
from espnet_supernet.deploy.latency_model import (
    DTYPES,
    default_model_path,
    profile_device,
    validate,
)
from espnet_supernet.export.supernet_loading import load_supernet


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True,
                        help="the supernet's experiment directory (config.yaml, weights)")
    parser.add_argument("--asr_model_file", type=Path, default=None,
                        help="default: the experiment's calibrated or averaged weights "
                        "(latency does not depend on the values)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, as deployed")
    parser.add_argument("--lengths", type=float, nargs="+", default=[5.0, 10.0],
                        help="input lengths (s) to profile; predictions interpolate")
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=DTYPES)
    parser.add_argument("--num_random", type=int, default=24,
                        help="random component subnets measured for the fit")
    parser.add_argument("--validate", type=int, default=20,
                        help="random subnets (besides the named sizes) to check the "
                        "predictions on; 0 skips the check")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--seed", type=int, default=0, help="of the profiled random subnets")
    parser.add_argument("--frontend_widths", type=int, nargs="*", default=None,
                        help="narrow front-end channel counts the random subnets draw from "
                        "(adds front-end width terms to the model; give two or more); "
                        "default: the named sizes' subnet_frontend_channels and midpoints; "
                        "give none for the full front end only")
    parser.add_argument("--output", type=Path, default=None,
                        help="default: <exp>/latency_model_<machine>.json")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Profile, fit, validate and write the latency model."""

    def run(args: argparse.Namespace) -> None:
        model_file = args.asr_model_file or default_model_file(args.exp)
        supernet, train_config = load_supernet(
            args.exp / "config.yaml", model_file if model_file.is_file() else None)
        model = profile_device(supernet, train_config, args.lengths, args.dtypes,
                               args.threads, args.num_random, args.repeats, args.seed,
                               args.frontend_widths)
        if args.validate:
            summary = validate(model, supernet, train_config, args.validate, args.repeats,
                               seed=args.seed + 1)["summary"]
            for dtype, row in summary.items():
                logging.info("%s: |error| median %.1f %%, 90th percentile %.1f %%, within "
                             "10 %%: %.0f %% of %d", dtype, 100 * row["median_abs_error"],
                             100 * row["p90_abs_error"], 100 * row["within_10pct"],
                             row["measurements"])
        path = model.save(args.output or default_model_path(args.exp, args.threads))
        print(path)

    run_cli("profile_device", get_parser(), cmd, run, (FileNotFoundError, TypeError, ValueError))


if __name__ == "__main__":
    main()
