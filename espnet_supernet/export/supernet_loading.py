"""Build a model from a training config and load a trained supernet from its files."""

import argparse
from pathlib import Path
from typing import Optional, Tuple

import torch
import yaml

from espnet_supernet.checkpoint import load_model
from espnet_supernet.tasks.asr import SupernetASRTask


def build_from_config(config: dict) -> torch.nn.Module:
    """The model of a config dict, built by the ASR task (classes of this package too)."""
    return SupernetASRTask.build_model(argparse.Namespace(**config))


def load_supernet(config: Path, model_file: Optional[Path]) -> Tuple[torch.nn.Module, dict]:
    """Build the supernet of ``config`` and load ``model_file``; errors say what is wrong
    (a missing file: ``FileNotFoundError``; not a supernet config, an unreadable model file
    or one of another config: ``ValueError``, see :mod:`espnet_supernet.checkpoint`).

    Returns:
        The model (eval mode) and the training config as a dict.
    """
    for path in (config, model_file):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
    train_config = yaml.safe_load(Path(config).read_text())
    if train_config.get("model") not in ("supernet", "supernet_transducer"):
        raise ValueError(f"{config} trains a '{train_config.get('model')}' model: export "
                         "supports the Conformer CTC supernet (model: supernet) and the "
                         "TODM RNN-T supernet (model: supernet_transducer)")
    model, _ = load_model(config, model_file, "cpu")
    return model.eval(), train_config
