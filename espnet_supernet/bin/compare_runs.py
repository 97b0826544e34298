#!/usr/bin/env python3
"""Runs of one config that differ in a setting, side by side (an option study).

Usage:
    python -m espnet_supernet.bin.compare_runs --results_dir results \\
        --runs asr_X_masked_skip_seed0 asr_X_masked_compute_seed0 \\
        --output results/masked_modules_X

Reads each run's record (``results/<exp>/{training,scores}.json``, stage 13 writes them)
and writes ``<output>.json`` and ``<output>.md``: the settings that differ, the training
time per update (all epochs and the selection epochs), and per size the modules kept,
the encoder parameters and the WER per test set. Runs of unequal updates or decoding are
refused. ``local/compare_masked_modules.sh`` runs this after its trainings.
"""

import argparse
import json
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.run_comparison import compare_runs, comparison_markdown


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", type=Path, default=Path("results"),
                        help="the recipe's run records (results/<exp>/)")
    parser.add_argument("--runs", nargs="+", required=True,
                        help="two or more experiment names (asr_<tag>) to compare")
    parser.add_argument("--output", type=Path, required=True,
                        help="path without suffix: <output>.json and <output>.md are written")
    parser.add_argument("--title", default=None,
                        help="the Markdown heading (default: the output's name)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments and write the comparison."""

    def run(args: argparse.Namespace) -> None:
        comparison = compare_runs(args.results_dir, args.runs)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        json_path = args.output.with_name(args.output.name + ".json")
        md_path = args.output.with_name(args.output.name + ".md")
        json_path.write_text(json.dumps(comparison, indent=1) + "\n")
        md_path.write_text(comparison_markdown(comparison, args.title or args.output.name))
        print(md_path)

    run_cli("compare_runs", get_parser(), cmd, run, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
