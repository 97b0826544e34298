"""Write Kaldi-style data directories (with segments) for TED-LIUM release 2 (ESPnet stage 1).

Usage:
    python -m espnet_supernet.bin.prepare_tedlium --tedlium2 <root> \\
        [--sets train dev test] [--outdir data] [--keep_unk false] [--join_suffix true]

``<root>`` is the directory that contains ``TEDLIUM_release2/``. Each set is written to
``<outdir>/<set>/{wav.scp,segments,text,utt2spk,spk2utt}`` (wav.scp keyed by talk;
stage 3 cuts the segments). Conventions (utterance ids, text normalisation) are those of
``espnet_supernet.data.tedlium_prep``. Exits non-zero if the root or a set is missing, or
if a set ends up without any segment.
"""

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet2.utils.types import str2bool

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.tedlium_prep import CorpusNotFoundError, prepare_tedlium


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tedlium2", type=Path, required=True, help="Directory that contains TEDLIUM_release2/."
    )
    parser.add_argument("--sets", nargs="+", default=["train", "dev", "test"])
    parser.add_argument("--outdir", type=Path, default=Path("data"))
    parser.add_argument("--keep_unk", type=str2bool, default=False,
                        help="keep <unk> words in the text (default: remove them)")
    parser.add_argument("--join_suffix", type=str2bool, default=True,
                        help="join ' suffixes to the word before (it 's -> it's)")
    return parser


def _run(args: argparse.Namespace) -> None:
    summaries = prepare_tedlium(args.tedlium2, args.sets, args.outdir,
                                keep_unk=args.keep_unk, join_suffix=args.join_suffix)
    empty = [summary.name for summary in summaries if summary.num_utts == 0]
    if empty:
        sys.exit(f"prepare_tedlium: no usable segment in {', '.join(empty)}.")


def main(cmd: Sequence[str] | None = None) -> None:
    """Runs the preparation (``cmd``: arguments, ``sys.argv[1:]`` if None)."""
    run_cli("prepare_tedlium", get_parser(), cmd, _run, (CorpusNotFoundError,))


if __name__ == "__main__":
    main()
