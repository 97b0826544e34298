"""Export one sparsity level of an Omni-sparsity model as a standalone model.

The level's masks are multiplied into the weights (``OmniSparsity.bake``), then:

- Conformer CTC supernet: the largest size becomes a stock ESPnet ``conformer`` in a
  stock ``espnet`` model (as ``subnet_export``); with ``structure: ffn_rows`` the pruned
  FFN hidden units are removed for good: a ``pruned_conformer`` whose FFN matrices are
  physically smaller, a dense model that runs faster.
- MH-SSM transducer: the training config without the sparsity entries (the supernet
  decodes with its largest size), the baked weights.

Unstructured exports are written in the compressed format of ``sparse_storage.py``
(file size about density x dense size plus a 1-bit-per-weight mask).
"""

import copy
import re
from typing import Callable, Dict, List, Optional

import torch

from espnet_supernet.export.subnet_export import (
    SubnetExport,
    block_specs_full,
    export_subnet,
    exported_config,
)
from espnet_supernet.train.supernet_asr_model import SupernetASRModel

SPARSITY_CONFIG_KEYS = ("sparsity", "sparsity_conf")
_FFN_KEY = re.compile(r"encoder\.encoders\.(\d+)\.(feed_forward(?:_macaron)?)\.(w_[12])\."
                      r"(weight|bias)$")


def activate_levels(model: torch.nn.Module, level: str,
                    block_levels: Optional[Dict[int, int]] = None) -> List[int]:
    """Switch ``model`` to sparsity level ``level`` (a named subnet), or with
    ``block_levels`` (encoder block -> level index) to that per-layer configuration.

    Returns:
        The active level index of every masked weight (``model.sparsity.active``).
    """
    if block_levels is None:
        model.set_subnet(level)
    else:
        model.set_block_levels(block_levels)
    return list(model.sparsity.active)


def export_sparsity_level(model: torch.nn.Module, train_config: dict, level: str,
                          build_model: Callable[[dict], torch.nn.Module],
                          block_levels: Optional[Dict[int, int]] = None) -> SubnetExport:
    """Standalone model of sparsity level ``level`` of ``model`` (which is not changed),
    or, with ``block_levels`` (encoder block -> level index, e.g. ``sparsity_search``'s
    choice), of that per-layer configuration (``level`` then only labels it).

    Raises:
        ValueError: the model has no sparsity levels, or ``level`` is unknown (the message
            lists the valid names).
    """
    if getattr(model, "sparsity", None) is None:
        raise ValueError("the model was not trained with sparsity (sparsity: omni)")
    model = copy.deepcopy(model).eval()
    sparsity = model.sparsity
    indices = activate_levels(model, level, block_levels)
    sparsity.bake()
    if isinstance(model, SupernetASRModel):
        config = {k: v for k, v in train_config.items() if k not in SPARSITY_CONFIG_KEYS}
        export = export_subnet(model, config, model.active_subnet, build_model)
        export.name = level
        if sparsity.structure == "ffn_rows":
            export = _drop_ffn_units(model, export, indices, build_model)
        return export
    config = {k: v for k, v in train_config.items() if k not in SPARSITY_CONFIG_KEYS}
    target = build_model(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()
             if not k.startswith("sparsity.")}
    target.load_state_dict(state, strict=True)
    return SubnetExport(level, config["encoder"], list(range(len(model.encoder.encoders))),
                        [], config, state, sum(p.numel() for p in target.parameters()))


def _drop_ffn_units(model: SupernetASRModel, export: SubnetExport, indices: List[int],
                    build_model: Callable[[dict], torch.nn.Module]) -> SubnetExport:
    """The stock export with every FFN cut to its kept hidden units at its level index
    (``indices``, one per target; at least one unit, whose zero W2 column keeps the
    output exact)."""
    sparsity = model.sparsity
    kept: Dict[str, torch.Tensor] = {}
    for i, target in enumerate(sparsity.targets):
        units = torch.nonzero(sparsity.keep(i) > indices[i]).flatten()
        kept[target.name] = units if units.numel() else torch.zeros(1, dtype=torch.long)
    full = block_specs_full(model)
    blocks: List[Dict[str, int]] = []
    for new, b in enumerate(export.kept_blocks):
        spec = dict(full)
        for key, attr in (("ffn_macaron", "feed_forward_macaron"), ("ffn", "feed_forward")):
            name = f"encoders.{b}.{attr}"
            if name in kept:
                spec[key] = int(kept[name].numel())
        blocks.append(spec)
    config = exported_config(export.config, export.kept_blocks, blocks, whole_blocks=False)
    # exported_config starts from the supernet's encoder_conf: keep the stock export's
    config["encoder_conf"] = {**{k: v for k, v in export.config["encoder_conf"].items()
                                 if k != "num_blocks"}, "blocks": blocks}
    state = {}
    for key, value in export.state_dict.items():
        match = _FFN_KEY.match(key)
        if match:
            rows = kept[f"encoders.{export.kept_blocks[int(match.group(1))]}.{match.group(2)}"]
            axis = 1 if match.group(3) == "w_2" and match.group(4) == "weight" else 0
            if not (match.group(3) == "w_2" and match.group(4) == "bias"):
                value = value.index_select(axis, rows)
        state[key] = value.clone()
    target = build_model(config)
    target.load_state_dict(state, strict=True)
    return SubnetExport(export.name, config["encoder"], export.kept_blocks, blocks, config,
                        state, sum(p.numel() for p in target.parameters()))
