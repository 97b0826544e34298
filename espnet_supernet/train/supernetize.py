"""Turn a trained stock ESPnet Conformer model into a supernet to fine-tune.

Every method of this package trains its supernet from scratch; a user who already has a
trained Conformer (their own experiment or an ``espnet2.bin.pack`` zip) can instead
convert it and fine-tune it with the sandwich rule, distilling from the original, as
Minitron (Sreenivas et al. 2024) and Flextron (Cai et al. 2024) turn a trained LLM into
nested sizes for a small fraction of its pretraining. :func:`supernetize`:

- checks the model: a stock ``conformer`` encoder in an ``espnet`` (CTC / attention)
  model, with options the supernet supports (``ctc_trim`` and ``concat_after`` are not),
  and a checkpoint that fits its config;
- writes the supernet config: the stock ``encoder_conf`` (with ``macaron_style`` and
  ``use_cnn_module`` spelled out: the supernet's defaults differ from stock's), the subnet
  definition (static sizes, or a learned selection whose step 1 then starts from the
  trained weights), ``model: supernet`` with in-place KD from a frozen copy of the
  original (``kd_teacher: frozen``) or from the largest size, and a fine-tuning budget
  (a fraction of the original's epochs);
- writes the initial checkpoint: the original's weights in the supernet (a stock
  Conformer state dict loads into ``supernet_conformer`` as it is; per-size CTC heads
  start as copies of the original's) and, for the frozen teacher, in ``kd_teacher.*``;
  at full size the supernet's encoder output equals the original's (checked: max abs
  difference <= 1e-5, else it raises).
"""

import copy
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from espnet_supernet.checkpoint import check_fits
from espnet_supernet.export.model_export import max_encoder_difference
from espnet_supernet.export.supernet_loading import build_from_config

UNSUPPORTED_ENCODER_OPTIONS = ("ctc_trim", "concat_after")
# what an ESPnet experiment's config.yaml holds about its own run, not about the model
# (``required``, ``version`` and ``distributed`` are no options: ``--config`` rejects them)
RUN_KEYS = ("required", "version", "distributed", "output_dir", "train_data_path_and_name_and_type",
            "valid_data_path_and_name_and_type", "train_shape_file", "valid_shape_file",
            "init_param", "resume", "config", "print_config", "dist_rank", "local_rank",
            "dist_master_addr", "dist_master_port", "dist_launcher", "multiprocessing_distributed")
TEACHERS = ("frozen", "inplace")
TOLERANCE = 1e-5
_HEAD = re.compile(r"^ctc\.ctc_lo\.heads\.\d+\.(weight|bias)$")  # per_size_ctc heads


def check_convertible(config: dict) -> None:
    """Raise ``ValueError`` (what to do) unless ``config`` is a stock Conformer ASR model
    this package can turn into a supernet."""
    if config.get("encoder") != "conformer":
        raise ValueError(f"supernetize converts a Conformer encoder (encoder: conformer); "
                         f"this model has encoder: {config.get('encoder')}")
    if config.get("model", "espnet") != "espnet":
        raise ValueError(f"supernetize converts ESPnet's CTC / attention model (model: "
                         f"espnet); this config has model: {config.get('model')}")
    if config.get("decoder") == "transducer":
        raise ValueError("supernetize converts CTC / attention models; a transducer "
                         "decoder is not supported (model: supernet is CTC / attention)")
    encoder_conf = config.get("encoder_conf") or {}
    used = [k for k in UNSUPPORTED_ENCODER_OPTIONS if encoder_conf.get(k)]
    if used:
        raise ValueError(f"the supernet does not support the encoder options "
                         f"{', '.join(used)} (supported: every other ConformerEncoder "
                         "option); a model trained with them cannot be converted")


def supernet_config(config: dict, subnet_sizes: Optional[Sequence[int]] = None,
                    subnet_rule: str = "layers", selection: Optional[str] = None,
                    selection_conf: Optional[Dict[str, Any]] = None,
                    teacher: str = "frozen", kd_weight: float = 1.0,
                    finetune_fraction: float = 0.25, per_size_ctc: bool = False) -> dict:
    """The supernet training config of the stock model ``config`` (see the module
    docstring). ``selection`` (``simple_topk``, ``iterative_zero_out``, ``ortho_softmax``)
    with ``selection_conf`` replaces the static ``subnet_sizes``; ``per_size_ctc`` gives
    each size its own CTC head (each a copy of the original's)."""
    check_convertible(config)
    if teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {teacher!r}")
    if not 0 < finetune_fraction <= 1:
        raise ValueError(f"finetune_fraction must be in (0, 1], got {finetune_fraction}")
    if selection is None and not subnet_sizes:
        raise ValueError("give the sizes to fine-tune (--subnet_sizes, module counts) or a "
                         "learned selection (--selection with its --selection_conf)")
    out = {k: copy.deepcopy(v) for k, v in config.items() if k not in RUN_KEYS}
    encoder_conf = dict(out.get("encoder_conf") or {})
    encoder_conf.setdefault("macaron_style", False)  # stock ConformerEncoder's defaults
    encoder_conf.setdefault("use_cnn_module", True)
    out["encoder"] = "supernet_conformer"
    if selection is None:
        encoder_conf.update(subnet_sizes=[int(s) for s in subnet_sizes], subnet_rule=subnet_rule)
    else:
        out["selection"], out["selection_conf"] = selection, dict(selection_conf or {})
        if subnet_sizes:
            encoder_conf.update(subnet_sizes=[int(s) for s in subnet_sizes])
    out["encoder_conf"] = encoder_conf
    out["model"] = "supernet"
    model_conf = dict(out.get("model_conf") or {})
    model_conf.update(inplace_kd_weight=kd_weight, kd_teacher=teacher)
    if per_size_ctc:
        model_conf["per_size_ctc"] = True
    out["model_conf"] = model_conf
    out["max_epoch"] = max(1, round(int(config.get("max_epoch") or 1) * finetune_fraction))
    return out


def convert_weights(stock: torch.nn.Module, supernet: torch.nn.Module
                    ) -> Dict[str, torch.Tensor]:
    """The supernet's state dict holding the stock model's weights: same names (per-size
    CTC heads and the frozen teacher's copies take the original's), the supernet's own
    buffers (mask table, BatchNorm slots) as built. Raises ``ValueError`` when a stock
    weight has no place in the supernet."""
    source = stock.state_dict()
    state, used = {}, set()
    for key, value in supernet.state_dict().items():
        plain = _HEAD.sub(r"ctc.ctc_lo.\1", key.removeprefix("kd_teacher."))
        if plain in source:
            state[key] = source[plain].detach().clone()
            used.add(plain)
        else:
            state[key] = value
    leftover = [k for k in source if k not in used]
    if leftover:
        raise ValueError(f"the supernet has no place for {len(leftover)} weights of the "
                         f"stock model ({', '.join(leftover[:3])}): not a stock Conformer?")
    return state


def supernetize(config: dict, state_dict: Dict[str, torch.Tensor], **options: Any
                ) -> Tuple[dict, Dict[str, torch.Tensor], float]:
    """Convert a stock model (training ``config`` and its weights).

    Args:
        config: the stock experiment's ``config.yaml`` contents.
        state_dict: its weights (e.g. ``valid.acc.ave.pth``).
        **options: :func:`supernet_config`'s.

    Returns:
        The supernet config, its initial state dict and the max |supernet full size -
        original| encoder output difference (<= ``TOLERANCE``).

    Raises:
        ValueError: a model that cannot be converted, or weights that do not fit the
            config (the message says which keys).
    """
    new_config = supernet_config(config, **options)
    stock = build_from_config(config)
    check_fits(stock, state_dict, "the stock config", "the stock model file")
    stock.load_state_dict(state_dict, strict=True)
    supernet = build_from_config(new_config)
    state = convert_weights(stock, supernet)
    supernet.load_state_dict(state, strict=True)
    supernet.eval()
    # reset the per-size BN slots from the loaded (stock) statistics
    supernet.encoder.reset_size_statistics()
    state = {k: v.detach().clone() for k, v in supernet.state_dict().items()}
    supernet.set_subnet(None)
    difference = max_encoder_difference(supernet, stock.eval(), seconds=2.0)
    if difference > TOLERANCE:
        raise RuntimeError(f"the converted supernet's full size differs from the original "
                           f"by {difference:.2e} (> {TOLERANCE}): please report this")
    logging.info(f"supernetize: {sum(p.numel() for p in stock.parameters())} parameters "
                 f"converted; sizes {supernet.subnet_names}; full size = original "
                 f"(max |diff| {difference:.1e})")
    return new_config, state, difference


def read_model(asr_train_config: Optional[Path], asr_model_file: Optional[Path],
               model_zip: Optional[Path], unpack_dir: Path) -> Tuple[Path, Path]:
    """The (config, model file) of the input: given directly or inside an
    ``espnet2.bin.pack`` zip (unpacked into ``unpack_dir``)."""
    if model_zip is not None:
        from espnet2.main_funcs.pack_funcs import unpack

        if not Path(model_zip).is_file():
            raise FileNotFoundError(f"{model_zip} does not exist")
        files = unpack(model_zip, unpack_dir)
        if not files.get("asr_model_file") or not files.get("asr_train_config"):
            raise ValueError(f"{model_zip} holds no ASR model (asr_model_file and "
                             f"asr_train_config in its meta.yaml; found {sorted(files)}): "
                             "pack it with espnet2.bin.pack asr")
        return Path(files["asr_train_config"]), Path(files["asr_model_file"])
    if asr_train_config is None or asr_model_file is None:
        raise ValueError("give --asr_train_config and --asr_model_file, or --model_zip")
    for path in (asr_train_config, asr_model_file):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} does not exist")
    return Path(asr_train_config), Path(asr_model_file)
