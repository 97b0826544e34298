"""Write Kaldi-style data directories for LibriSpeech parts (ESPnet stage 1).

Usage:
    python -m espnet_supernet.bin.prepare_librispeech --librispeech <root> \\
        [--parts train-clean-100 dev-clean test-clean] [--outdir data]

``<root>`` is the directory that contains ``LibriSpeech/``. Each part is written to
``<outdir>/<part with - replaced by _>/{wav.scp,text,utt2spk,spk2utt}``. Exits non-zero
if the root or a part is missing, or if a part ends up without any utterance.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.librispeech_prep import CorpusNotFoundError, prepare_librispeech


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--librispeech", type=Path, required=True, help="Directory that contains LibriSpeech/."
    )
    parser.add_argument(
        "--parts", nargs="+", default=["train-clean-100", "dev-clean", "test-clean"]
    )
    parser.add_argument("--outdir", type=Path, default=Path("data"))
    return parser


def _run(args: argparse.Namespace) -> None:
    summaries = prepare_librispeech(args.librispeech, args.parts, args.outdir)
    empty = [summary.part for summary in summaries if summary.num_utts == 0]
    if empty:
        sys.exit(f"prepare_librispeech: no usable utterance in {', '.join(empty)}.")


def main(cmd: Sequence[str] | None = None) -> None:
    """Runs the preparation (``cmd``: arguments, ``sys.argv[1:]`` if None)."""
    run_cli("prepare_librispeech", get_parser(), cmd, _run, (CorpusNotFoundError,))


if __name__ == "__main__":
    main()
