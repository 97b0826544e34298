#!/usr/bin/env python3
"""Publish a recipe run's record (stages 13 and 14): the committed files the docs render.

Usage:
    python -m espnet_supernet.bin.publish_run --exp exp/asr_x [--results_dir results] \\
        [--parts training scores deploy]

Writes ``<results_dir>/<exp name>/training.json`` (updates, epochs, training time,
last validation stats, from ``checkpoint.pth``), ``scores.json`` (WER / CER and error
counts per size and test set, re-scored from stage 13's hypotheses, with the decoding
config) and ``deploy.json`` (stage 14's deployment rows), each from the experiment
directory. ``tools/docs.sh`` renders the README's and docs' tables from these files.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.run_record import publish_run


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="experiment directory")
    parser.add_argument("--results_dir", type=Path, default=Path("results"),
                        help="the recipe's committed results directory")
    parser.add_argument("--parts", nargs="+", default=None,
                        choices=["training", "scores", "deploy"],
                        help="records to write (default: every one whose source exists)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments and publish the run."""

    def run(args: argparse.Namespace) -> None:
        for path in publish_run(args.exp, args.results_dir, args.parts):
            print(path)

    run_cli("publish_run", get_parser(), cmd, run, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
