"""Load a trained model from its config and model file, with errors that say what to do.

Every entry point that loads a model (``asr_inference``, ``export``, ``select_subnet``,
``sparsity_search``, ``calibrate_batch_norm``, ``subnet_report``, ``deploy_report``) goes
through ``load_model``:

- a model file that ``torch.load`` cannot read (truncated by an interrupted copy or
  save, or not a PyTorch file) raises :class:`CheckpointError` naming the file, its size
  and how to write it again, instead of PyTorch's ``PytorchStreamReader failed reading
  zip archive`` traceback;
- a model file of another model (another config) raises :class:`CheckpointError` with
  the missing, unexpected and shape-mismatched keys (a few of each, with counts).
  ESPnet's own ``build_model_from_file`` loads with ``strict=False``, which silently
  leaves the missing weights (e.g. of a deeper encoder) at their random initialisation.

Files in the compressed sparse format (``export/sparse_storage.py``) load too.
"""

import argparse
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
import yaml

from espnet_supernet.export.sparse_storage import FORMAT as SPARSE_FORMAT
from espnet_supernet.export.sparse_storage import decompress_state_dict
from espnet_supernet.tasks.asr import SupernetASRTask

PathLike = Union[str, Path]
SHOWN_KEYS = 3  # keys named per kind of mismatch
TRAINING_CHECKPOINT_KEYS = {"model", "optimizers", "reporter"}


class CheckpointError(ValueError):
    """A model file that cannot be read, or whose weights do not fit the model."""


def load_state_dict_file(path: PathLike) -> Dict[str, torch.Tensor]:
    """The state dict stored in the model file ``path`` (on the CPU).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: it is unreadable (truncated, not a PyTorch file) or holds no
            model state dict (e.g. a training ``checkpoint.pth``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001: zip, pickle and EOF errors alike
        reason = str(error).strip().splitlines()[0] if str(error).strip() else \
            type(error).__name__
        raise CheckpointError(
            f"{path} ({path.stat().st_size} bytes) is truncated or not a PyTorch checkpoint "
            f"(torch.load: {reason}): {_remedy(path)}") from None
    if isinstance(stored, dict) and stored.get("format") == SPARSE_FORMAT:
        return decompress_state_dict(stored)
    if isinstance(stored, dict) and "module" in stored:  # deepspeed, as ESPnet reads it
        stored = stored["module"]
    if isinstance(stored, dict) and TRAINING_CHECKPOINT_KEYS <= set(stored):
        raise CheckpointError(
            f"{path} is a training checkpoint (model, optimizer and scheduler states for "
            "--resume), not a model file: give the averaged model (valid.loss.ave.pth) or "
            "an epoch's model (<N>epoch.pth) of the same experiment")
    if not isinstance(stored, dict) or not all(isinstance(k, str) for k in stored):
        raise CheckpointError(f"{path} holds a {type(stored).__name__}, not a model state "
                              f"dict: {_remedy(path)}")
    return stored


def _remedy(path: Path) -> str:
    """How to get a good copy of the model file ``path``."""
    name = path.name
    if name.endswith(".bncal.pth"):
        again = ("re-run stage 12 (espnet_supernet.bin.calibrate_batch_norm), which "
                 "writes it from the averaged model")
    elif name == "model.pth" and (path.parent / "export.json").exists():
        again = "re-run the export (stage 14, espnet_supernet.bin.export)"
    else:
        again = ("re-run the training stage that wrote it (stage 11 for the ASR model, 7 "
                 "for the LM, e.g. ./run.sh --stage 11 --stop_stage 11): training resumes "
                 "(--resume true), finds itself finished and averages the best epochs into "
                 "valid.loss.ave.pth again")
    return f"re-copy it, or write it again: {again}"


def check_fits(model: torch.nn.Module, state_dict: Dict[str, torch.Tensor],
               config_path: PathLike, model_path: PathLike) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` has exactly the keys and
    shapes of ``model.state_dict()`` (what ``load_state_dict(strict=True)`` needs)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    reshaped = [f"{k} {_shown(v)} in the file vs {_shown(expected[k])} in the model"
                for k, v in state_dict.items() if k in expected
                and _shape(v) != _shape(expected[k])]
    if not (missing or unexpected or reshaped):
        return
    problems = [_listed(len(keys), what, keys) for keys, what in (
        (missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if keys]
    written_beside = Path(model_path).parent / "config.yaml"
    hint = (f" (e.g. {written_beside})" if written_beside.is_file()
            and written_beside.resolve() != Path(config_path).resolve() else "")
    raise CheckpointError(
        f"{model_path} does not fit the model of {config_path}: {'; '.join(problems)}. "
        f"This checkpoint was not trained with {config_path}: pass the config.yaml of the "
        f"experiment that wrote it{hint}")


def _shape(value: object) -> Optional[Tuple[int, ...]]:
    return tuple(value.shape) if hasattr(value, "shape") else None


def _shown(value: object) -> str:
    """A shape as ``3x12`` (``scalar``, or the type of a value that is no tensor)."""
    shape = _shape(value)
    if shape is None:
        return type(value).__name__
    return "x".join(map(str, shape)) or "scalar"


def _listed(count: int, what: str, keys: List[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS]) + (", ..." if count > SHOWN_KEYS else "")
    return f"{count} {'key' if count == 1 else 'keys'} {what} ({shown})"


def load_model(config_path: Optional[PathLike], model_path: Optional[PathLike],
               device: str = "cpu") -> Tuple[torch.nn.Module, argparse.Namespace]:
    """Build the model of the training config ``config_path`` (this package's ASR task)
    on ``device`` and load ``model_path`` into it (None: keep the initial weights).

    As ESPnet's ``build_model_from_file``, without a config the one next to the model
    file is used. The model file is read before the model is built, so an unreadable
    file fails fast.

    Returns:
        The model (in training mode, as ESPnet returns it) and the training config.
    """
    if config_path is None:
        if model_path is None:
            raise ValueError("give the training config (config.yaml) or a model file")
        config_path = Path(model_path).parent / "config.yaml"
    if not Path(config_path).is_file():
        raise FileNotFoundError(f"{config_path} does not exist")
    state_dict = None if model_path is None else load_state_dict_file(model_path)
    with open(config_path, encoding="utf-8") as f:
        train_args = argparse.Namespace(**yaml.safe_load(f))
    model = SupernetASRTask.build_model(train_args).to(device)
    if state_dict is not None:
        check_fits(model, state_dict, config_path, model_path)
        model.load_state_dict(state_dict, strict=True)
    return model, train_args
