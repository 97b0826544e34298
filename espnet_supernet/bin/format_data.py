"""Check, filter and copy a data directory for ESPnet's raw waveform input (stages 3-4).

Usage:
    python -m espnet_supernet.bin.format_data <data_dir> <outdir> \\
        [--fs 16000] [--min_duration 0.1] [--max_duration 20] [--nj 2]

Example: ``format_data data/dev_clean dump/raw/dev_clean``. Writes ``wav.scp``, ``text``,
``utt2spk``, ``spk2utt``, ``utt2num_samples`` and ``feats_type`` to ``<outdir>``;
corrupt audio files are skipped and named in the log. Exits non-zero on a sample rate
other than ``--fs`` or if no utterance is left.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.format_data import SampleRateError, format_data_dir


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", type=Path, help="Kaldi-style data directory.")
    parser.add_argument("outdir", type=Path, help="Output directory, e.g. dump/raw/<set>.")
    parser.add_argument("--fs", type=int, default=16000, help="Expected sample rate.")
    parser.add_argument("--min_duration", type=float, default=0.1, help="Seconds.")
    parser.add_argument("--max_duration", type=float, default=20.0, help="Seconds.")
    parser.add_argument("--nj", type=int, default=2, help="Decoding processes.")
    return parser


def _run(args: argparse.Namespace) -> None:
    summary = format_data_dir(args.data_dir, args.outdir, fs=args.fs,
                              min_duration=args.min_duration,
                              max_duration=args.max_duration, nj=args.nj)
    if summary.num_utts == 0:
        sys.exit(f"format_data: no utterance left in {args.outdir}.")


def main(cmd: Sequence[str] | None = None) -> None:
    """Runs the formatting (``cmd``: arguments, ``sys.argv[1:]`` if None)."""
    run_cli("format_data", get_parser(), cmd, _run, (FileNotFoundError, SampleRateError))


if __name__ == "__main__":
    main()
