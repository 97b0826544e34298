#!/usr/bin/env python3
"""One supernet job vs every size trained alone: the comparison tables of RESULTS.md.

Usage:
    python -m espnet_supernet.bin.compare_alone [--results_dir results] \\
        [--results_md RESULTS.md]

Reads every run record under ``--results_dir`` (``training.json`` + ``scores.json``,
written by stage 13), groups the runs whose settings differ only in ``seed`` and
``model_conf.train_only`` (``local/compare_alone.sh`` trains them) and rewrites the
"One job vs each size alone" sections of ``--results_md``: per size and test set, the
WER of the one job and of the size alone (mean and range over seeds), their difference,
and the training time of the one job against the sum of the alone jobs. Runs with
unequal budgets (updates, decoding) are not compared (a warning says why). Stage 13
runs this after every scoring.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.alone_comparison import update_results_md


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results_dir", type=Path, default=Path("results"),
                        help="the recipe's run records (results/<exp>/)")
    parser.add_argument("--results_md", type=Path, default=Path("RESULTS.md"),
                        help="the RESULTS.md whose comparison sections are rewritten")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments and rewrite the comparison sections."""

    def run(args: argparse.Namespace) -> None:
        if not args.results_dir.is_dir():
            raise FileNotFoundError(f"{args.results_dir} is not a directory: run stage 13 "
                                    "(it publishes each run's record there) first")
        titles = update_results_md(args.results_md, args.results_dir)
        logging.info(f"{args.results_md}: {len(titles)} comparison(s)"
                     + "".join(f"\n  {t}" for t in titles))

    run_cli("compare_alone", get_parser(), cmd, run, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
