#!/usr/bin/env python3
"""Write each named subnet's mask, parameter count and encoder FLOPs as JSON.

Usage:
    python -m espnet_supernet.bin.subnet_report --asr_train_config exp/asr/config.yaml \\
        --asr_model_file exp/asr/valid.loss.ave.pth --output exp/asr/subnets.json \\
        [--seconds 10]

Counting conventions: see :mod:`espnet_supernet.nets.subnet_cost`. ``total_params`` counts
the whole model as the subnet uses it (its encoder modules, its own CTC head, the decoder).
The report is :func:`espnet_supernet.deploy.subnet_report.subnet_report`.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.checkpoint import load_model
from espnet_supernet.deploy.subnet_report import write_subnet_report


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="utterance length for the FLOPs count")
    return parser


def report(args: argparse.Namespace) -> dict:
    """Load the model and write the report."""
    model, _ = load_model(args.asr_train_config, args.asr_model_file, "cpu")
    return write_subnet_report(model, args.output, args.seconds)


def main(cmd: Optional[List[str]] = None) -> None:
    """Write the report of the model given on the command line."""
    run_cli("subnet_report", get_parser(), cmd, report, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
