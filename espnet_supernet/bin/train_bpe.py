#!/usr/bin/env python3
"""Train a sentencepiece BPE model on a Kaldi-style text file (ESPnet stage 5).

Usage:
    python -m espnet_supernet.bin.train_bpe --text dump/raw/train/text \\
        --model_prefix data/token_list/bpe_unigram300/bpe --vocab_size 300 \\
        [--model_type unigram] [--character_coverage 1.0] \
        [--token_list data/token_list/bpe_unigram300/tokens.txt]

The first field of each line (the utterance id) is dropped. Writes ``<prefix>.model`` and
``<prefix>.vocab`` and, with ``--token_list``, ESPnet's token list: ``<blank>``, ``<unk>``,
every piece of the model, ``<sos/eos>`` (one per line, the line number is the token id).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_supernet.data.bpe import train_bpe, write_token_list


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", type=Path, required=True, help="Kaldi-style text file")
    parser.add_argument("--model_prefix", type=Path, required=True)
    parser.add_argument("--vocab_size", type=int, default=300)
    parser.add_argument("--model_type", default="unigram", choices=["unigram", "bpe"])
    parser.add_argument("--character_coverage", type=float, default=1.0)
    parser.add_argument("--token_list", type=Path, default=None,
                        help="also write ESPnet's token list here")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Train the model (and write the token list)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    try:
        model = train_bpe(args.text, args.model_prefix, args.vocab_size, args.model_type,
                          args.character_coverage)
    except ValueError as error:  # no transcripts
        raise SystemExit(f"train_bpe: {error}") from None
    if args.token_list is not None:
        write_token_list(model, args.token_list)


if __name__ == "__main__":
    main()
