"""Load a chosen subset of a data directory's utterances, preprocessed as in training.

Tools that score or calibrate a trained model on a few utterances (per-layer sparsity
search, BatchNorm re-estimation) pick utterance ids from a Kaldi-style file and load only
those through ESPnet's streaming iterator with the training config's preprocessing.
"""

import argparse
import tempfile
from typing import Dict, List, Sequence, Tuple

import torch

from espnet_supernet.tasks.asr import SupernetASRTask


def read_keys(path: str) -> List[str]:
    """The utterance ids (first fields) of a Kaldi-style file, in file order."""
    with open(path, encoding="utf-8") as f:
        return [line.split(maxsplit=1)[0] for line in f if line.strip()]


def load_utterances(train_args: argparse.Namespace, data: Sequence[Tuple[str, str, str]],
                    keys: Sequence[str], batch_size: int,
                    inference: bool) -> List[Dict[str, torch.Tensor]]:
    """The utterances ``keys`` of the ``(path, name, type)`` data files, batched.

    Args:
        train_args: the training config (preprocessing: tokenizer, token list).
        data: as ``--data_path_and_name_and_type``, e.g. ``(wav.scp, speech, sound)``.
        keys: the utterance ids to load.
        batch_size: utterances per batch.
        inference: ESPnet's inference mode of the iterator (e.g. speech without text).

    Returns:
        ESPnet's collated batches, e.g. ``speech`` (B, T) and ``speech_lengths`` (B,).
    """
    with tempfile.NamedTemporaryFile("w", suffix=".scp") as key_file:
        key_file.write("".join(f"{k}\n" for k in keys))
        key_file.flush()
        loader = SupernetASRTask.build_streaming_iterator(
            data_path_and_name_and_type=list(data), dtype="float32", batch_size=batch_size,
            key_file=key_file.name, num_workers=0,
            preprocess_fn=SupernetASRTask.build_preprocess_fn(train_args, False),
            collate_fn=SupernetASRTask.build_collate_fn(train_args, False),
            allow_variable_data_keys=False, inference=inference)
        return [batch for _, batch in loader]
