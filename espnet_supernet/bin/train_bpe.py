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
import tempfile
from pathlib import Path
from typing import List, Optional

import sentencepiece as spm


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
    """Train the model."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    lines = [ln.split(maxsplit=1) for ln in args.text.read_text(encoding="utf-8").splitlines()]
    sentences = [parts[1] for parts in lines if len(parts) == 2]
    if not sentences:
        raise SystemExit(f"train_bpe: {args.text} has no transcripts")
    args.model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write("\n".join(sentences) + "\n")
        f.flush()
        spm.SentencePieceTrainer.train(
            input=f.name,
            model_prefix=str(args.model_prefix),
            vocab_size=args.vocab_size,
            model_type=args.model_type,
            character_coverage=args.character_coverage,
            input_sentence_size=100_000_000,
            minloglevel=2,
        )
    logging.info("wrote %s.model (%d sentences)", args.model_prefix, len(sentences))
    if args.token_list is not None:
        write_token_list(Path(f"{args.model_prefix}.model"), args.token_list)


def write_token_list(model: Path, output: Path) -> None:
    """ESPnet token list of a sentencepiece model (blank 0, unk 1, sos/eos last)."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_unknown(i) or sp.is_control(i))]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(["<blank>", "<unk>", *pieces, "<sos/eos>"]) + "\n")
    logging.info("wrote %s (%d tokens)", output, len(pieces) + 3)


if __name__ == "__main__":
    main()
