"""Generate a small espeak-ng corpus in the LibriSpeech layout.

Usage:
    python -m espnet_supernet.bin.make_embedded_corpus --outdir downloads/embedded \\
        [--num_train_utts 3300] [--num_dev_utts 200] [--num_test_utts 200] \\
        [--num_train_speakers 12] [--num_dev_speakers 3] [--num_test_speakers 3] \\
        [--chapters_per_speaker 2] [--seed 0] [--nj 2] \\
        [--fortune_dir /usr/share/games/fortunes]

The result is ``<outdir>/LibriSpeech/{train-clean-100,dev-clean,test-clean}``, ready
for ``espnet_supernet.bin.prepare_librispeech --librispeech <outdir>``.
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.embedded_corpus import CorpusConfig, generate_corpus


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser.

    Returns:
        The parser.
    """
    defaults = CorpusConfig()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--outdir", type=Path, required=True, help="Corpus root directory.")
    for name in (
        "num_train_utts",
        "num_dev_utts",
        "num_test_utts",
        "num_train_speakers",
        "num_dev_speakers",
        "num_test_speakers",
        "chapters_per_speaker",
        "seed",
    ):
        parser.add_argument(f"--{name}", type=int, default=getattr(defaults, name))
    parser.add_argument("--fortune_dir", default=defaults.fortune_dir)
    parser.add_argument("--nj", type=int, default=2, help="Parallel synthesis processes.")
    parser.add_argument("--log_interval", type=int, default=500)
    return parser


def _run(parsed: argparse.Namespace) -> None:
    args = vars(parsed)
    outdir, nj, log_interval = args.pop("outdir"), args.pop("nj"), args.pop("log_interval")
    generate_corpus(outdir, CorpusConfig(**args), nj=nj, log_interval=log_interval)


def main(cmd: Sequence[str] | None = None) -> None:
    """Runs the generator (``cmd``: arguments, ``sys.argv[1:]`` if None)."""
    run_cli("make_embedded_corpus", get_parser(), cmd, _run,
            (FileExistsError, FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
