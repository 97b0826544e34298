"""A sentencepiece model and ESPnet's token list from a Kaldi-style text file (stage 5).

The first field of each line (the utterance id) is dropped. ``train_bpe`` writes
``<prefix>.model`` and ``<prefix>.vocab``; ``write_token_list`` writes ESPnet's token list:
``<blank>``, ``<unk>``, every piece of the model, ``<sos/eos>`` (one per line, the line
number is the token id). The command line is ``espnet_supernet.bin.train_bpe``.
"""

import logging
import tempfile
from pathlib import Path

import sentencepiece as spm


def train_bpe(text: Path, model_prefix: Path, vocab_size: int = 300,
              model_type: str = "unigram", character_coverage: float = 1.0) -> Path:
    """Train the model on the transcripts of ``text``; returns ``<prefix>.model``."""
    lines = [ln.split(maxsplit=1) for ln in text.read_text(encoding="utf-8").splitlines()]
    sentences = [parts[1] for parts in lines if len(parts) == 2]
    if not sentences:
        raise ValueError(f"{text} has no transcripts")
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as f:
        f.write("\n".join(sentences) + "\n")
        f.flush()
        spm.SentencePieceTrainer.train(
            input=f.name,
            model_prefix=str(model_prefix),
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            input_sentence_size=100_000_000,
            minloglevel=2,
        )
    logging.info("wrote %s.model (%d sentences)", model_prefix, len(sentences))
    return Path(f"{model_prefix}.model")


def write_token_list(model: Path, output: Path) -> None:
    """ESPnet token list of a sentencepiece model (blank 0, unk 1, sos/eos last)."""
    sp = spm.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_unknown(i) or sp.is_control(i))]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("\n".join(["<blank>", "<unk>", *pieces, "<sos/eos>"]) + "\n")
    logging.info("wrote %s (%d tokens)", output, len(pieces) + 3)
