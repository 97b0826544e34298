#!/usr/bin/env python3
"""Early-exit decoding against every fixed size: WER and encoder compute per test set.

Usage:
    python -m espnet_supernet.bin.early_exit_report --exp exp/asr_x \\
        --model_file exp/asr_x/valid.loss.ave.bncal.pth --test_sets "dev_clean test_clean" \\
        --thresholds 0.8 0.9 0.95

Run it in the recipe directory. One model is loaded once; each utterance is decoded (CTC best path) by every named size,
switched in place, and by early exit at each threshold: the smallest size first, the next
larger one only while the size's confidence (mean over frames of the largest CTC
posterior) is below the threshold, starting from the blocks the two sizes share
(``espnet_supernet.decode.early_exit``). Writes ``results/<exp>/early_exit.json``: per
mode and test set the WER, the encoder GFLOPs per second of audio (cost model) and their
fraction of the largest size's, and which size answered how often.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.checkpoint import CheckpointError
from espnet_supernet.deploy.early_exit_report import early_exit_report, write_early_exit


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="the experiment directory")
    parser.add_argument("--model_file", type=Path, help="default: <exp>/valid.loss.ave.bncal.pth")
    parser.add_argument("--test_sets", default="dev_clean test_clean",
                        help="space-separated sets under --dumpdir")
    parser.add_argument("--dumpdir", type=Path, default=Path("dump/raw"))
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.9, 0.95],
                        help="confidence thresholds (mean max CTC posterior, 0..1)")
    parser.add_argument("--sizes", nargs="+", help="sizes to try, smallest first (default: all)")
    parser.add_argument("--results_dir", type=Path, default=Path("results"))
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments, decode and write the record."""

    def run(args: argparse.Namespace) -> None:
        model_file = args.model_file or args.exp / "valid.loss.ave.bncal.pth"
        record = early_exit_report(args.exp, model_file, args.test_sets.split(), args.dumpdir,
                                   args.thresholds, args.sizes)
        logging.info(f"wrote {write_early_exit(record, args.results_dir)}")

    run_cli("early_exit_report", get_parser(), cmd, run,
            (FileNotFoundError, ValueError, CheckpointError))


if __name__ == "__main__":
    main()
