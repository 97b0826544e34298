"""Export one named subnet of a trained supernet as a standalone ESPnet ASR model.

- A subnet of whole blocks becomes ESPnet's stock ``conformer`` encoder (kept blocks
  renumbered) in a stock ``espnet`` model: its ``config.yaml`` and weights load and decode
  with plain ``espnet2.bin.asr_inference`` without this package. With
  ``stock_encoder=False`` it becomes a ``pruned_conformer`` of full blocks instead, which
  runs this package's forward (on the CPU its front end takes about half the time of
  ESPnet's; whole exported sizes ran 1.4-1.5x faster, ``bench/bench_export.py``).
- Any other subnet (single modules, some FFN chunks or attention heads, a narrow front
  end: ``subnet_frontend_channels``) becomes a
  :class:`~espnet_supernet.nets.pruned_conformer_encoder.PrunedConformerEncoder`
  (``encoder: pruned_conformer``) with physically smaller weights.

Either way the export carries the subnet's own BatchNorm statistics and CTC head, and
its parameters are exactly those the subnet computes with.
"""

import copy
import inspect
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from espnet2.asr.espnet_model import ESPnetASRModel

from espnet_supernet.nets.elastic_subsampling import sliced_parameters
from espnet_supernet.nets.switchable_linear import SwitchableLinear
from espnet_supernet.nets.unit_gates import UnitSlice, is_skipped
from espnet_supernet.nets.vgg_subsampling import VGG4Subsampling
from espnet_supernet.train.supernet_asr_model import SupernetASRModel

SUPERNET_ENCODER_KEYS = ("subnet_sizes", "subnet_masks", "subnet_rule", "subnet_names",
                         "bn_stats", "ffn_chunks", "prune_heads", "adaptive_ffn_dropout",
                         "subnet_frontend_channels")
STOCK_MODEL_KEYS = tuple(inspect.signature(ESPnetASRModel.__init__).parameters)
SUPERNET_CONFIG_KEYS = ("selection", "selection_conf", "sparsity", "sparsity_conf")
_MODULE_OF_ATTR = {"feed_forward_macaron": "ffn_macaron", "norm_ff_macaron": "ffn_macaron",
                   "self_attn": "mhsa", "norm_mha": "mhsa", "conv_module": "conv",
                   "norm_conv": "conv", "feed_forward": "ffn", "norm_ff": "ffn"}
_ROWS = re.compile(r"(w_1\.(weight|bias)|linear_[qkv]\.(weight|bias)|linear_pos\.weight)$")
_COLUMNS = re.compile(r"(w_2|linear_out)\.weight$")
_HEADS = re.compile(r"pos_bias_[uv]$")


@dataclass
class SubnetExport:
    """A subnet as a standalone model.

    Attributes:
        name: the subnet's name in the supernet.
        encoder: ``"conformer"`` (stock ESPnet) or ``"pruned_conformer"``.
        kept_blocks: supernet block index of each exported block.
        blocks: per exported block, kept size of each module (FFN hidden units, heads,
            conv 1/0; 0 = removed), keys as the supernet's ``layout.kinds``.
        config: the exported model's training config (``config.yaml`` contents).
        state_dict: its weights (keys of the exported model).
        num_params: parameters of the exported model (buffers not counted).
    """

    name: str
    encoder: str
    kept_blocks: List[int]
    blocks: List[Dict[str, int]]
    config: dict
    state_dict: Dict[str, torch.Tensor]
    num_params: int


def block_specs(model: SupernetASRModel) -> List[Optional[Dict[str, int]]]:
    """Kept size of each module of every block under the active subnet (None: block
    skipped entirely)."""
    encoder, full = model.encoder, block_specs_full(model)
    gates, kinds = encoder.gates(encoder.active_mask), encoder.layout.kinds
    specs: List[Optional[Dict[str, int]]] = []
    for b in range(len(encoder.encoders)):
        spec = {}
        for kind, key in enumerate(kinds):
            gate = gates[len(kinds) * b + kind]
            if isinstance(gate, UnitSlice):
                spec[key] = len(gate.units) if key == "mhsa" else len(gate.rows)
            else:
                spec[key] = 0 if is_skipped(gate) else full[key]
        specs.append(spec if any(spec.values()) else None)
    return specs


def exported_interctc(layers: List[int], kept_blocks: List[int]) -> List[int]:
    """Intermediate CTC layers of the supernet renumbered for the exported blocks: layer i
    reads after the last kept block at or before it (``conformer_blocks.interctc_feeds``),
    which is the exported block of that rank; layers the subnet does not compute go."""
    out = []
    for i in layers:
        rank = sum(1 for b in kept_blocks if b + 1 <= i)
        if 0 < rank < len(kept_blocks) and rank not in out:
            out.append(rank)
    return out


def exported_config(train_config: dict, kept_blocks: List[int],
                    blocks: List[Dict[str, int]], whole_blocks: bool,
                    frontend_channels: Optional[int] = None) -> dict:
    """The exported model's config: stock ``espnet`` model, stock or pruned encoder (with
    ``frontend_channels`` given: a pruned encoder with that narrow front end)."""
    config = copy.deepcopy(train_config)
    encoder_conf = {k: v for k, v in config["encoder_conf"].items()
                    if k not in SUPERNET_ENCODER_KEYS}
    for key in ("macaron_style", "use_cnn_module"):  # the supernet's defaults: true
        encoder_conf.setdefault(key, True)
    if encoder_conf.get("interctc_layer_idx"):
        encoder_conf["interctc_layer_idx"] = exported_interctc(
            list(encoder_conf["interctc_layer_idx"]), kept_blocks)
    if isinstance(encoder_conf.get("stochastic_depth_rate"), list):  # per supernet block
        encoder_conf["stochastic_depth_rate"] = [
            encoder_conf["stochastic_depth_rate"][b] for b in kept_blocks]
    if whole_blocks:
        config["encoder"] = "conformer"
        encoder_conf["num_blocks"] = len(kept_blocks)
        for key in ("vgg_channels", "vgg_activation"):  # not stock options
            encoder_conf.pop(key, None)
    else:
        config["encoder"] = "pruned_conformer"
        encoder_conf.pop("num_blocks", None)
        encoder_conf["blocks"] = blocks
        if frontend_channels is not None:
            encoder_conf["frontend_channels"] = frontend_channels
    config["encoder_conf"] = encoder_conf
    config["model"] = "espnet"
    config["model_conf"] = {k: v for k, v in (config.get("model_conf") or {}).items()
                            if k in STOCK_MODEL_KEYS}
    for key in SUPERNET_CONFIG_KEYS:
        config.pop(key, None)
    return config


def export_subnet(model: SupernetASRModel, train_config: dict, name: str,
                  build_model, mask: Optional[List[int]] = None,
                  stock_encoder: bool = True,
                  frontend_channels: Optional[int] = None) -> SubnetExport:
    """Export the named subnet of ``model`` (or the unnamed subnet ``mask``).

    Args:
        model: the trained supernet (its active subnet is changed).
        train_config: the supernet's ``config.yaml`` contents.
        name: a named subnet (``model.subnet_names``), or a label for ``mask``.
        build_model: ``config dict -> model``, e.g. the ASR task's ``build_model`` on a
            namespace (the exported weights are checked by a strict load into it).
        mask: a module or unit mask (e.g. an OrthoSoftmax prefix between the trained
            budgets); it uses the largest size's CTC head, and its own BatchNorm
            statistics only if it equals a named subnet's mask.
        stock_encoder: export a subnet of whole blocks as ESPnet's stock ``conformer``
            (else as a ``pruned_conformer``, like every other subnet; always with the
            VGG front end, which stock ESPnet does not have).
        frontend_channels: with ``mask``, run the front end at these channels (None:
            all, even where ``mask`` equals a narrow named size's; a named subnet has its
            own, ``subnet_frontend_channels``).

    Raises:
        ValueError: unknown subnet name (the message lists the valid ones), or
            ``frontend_channels`` the front end cannot run at.
        TypeError: ``model`` is not a supernet.
    """
    if not isinstance(model, SupernetASRModel):
        raise TypeError(f"the checkpoint's model is a {type(model).__name__}: export "
                        "supports the Conformer CTC supernet (model: supernet)")
    if mask is None:
        model.set_subnet(name)
    else:
        model.set_subnet(None)
        model.encoder.set_subnet(mask)  # takes a named size's width if the masks match:
        model.encoder.set_frontend_channels(frontend_channels)  # a mask has its own
    specs = block_specs(model)
    kept = [b for b, spec in enumerate(specs) if spec is not None]
    blocks = [specs[b] for b in kept]
    # ESPnet's stock encoder has no VGG front end: such a model exports as pruned_conformer
    channels = getattr(model.encoder, "active_frontend_channels", None)
    stock_frontend = not isinstance(model.encoder.embed, VGG4Subsampling) and channels is None
    whole = stock_encoder and stock_frontend and all(
        spec == block_specs_full(model) for spec in blocks)
    config = exported_config(train_config, kept, blocks, whole, channels)
    target = build_model(config)
    state = _subnet_state(model, target.state_dict(), kept)
    target.load_state_dict(state, strict=True)  # shapes and names must match exactly
    return SubnetExport(name, config["encoder"], kept, blocks, config, state,
                        sum(p.numel() for p in target.parameters()))


def block_specs_full(model: SupernetASRModel) -> Dict[str, int]:
    """Module sizes of a complete block of the supernet."""
    layer, kinds = model.encoder.encoders[0], model.encoder.layout.kinds
    sizes = {"mhsa": layer.self_attn.h, "conv": 1}
    for kind, attr in (("ffn_macaron", "feed_forward_macaron"), ("ffn", "feed_forward")):
        if kind in kinds:
            sizes[kind] = _hidden_units(getattr(layer, attr))
    return {kind: sizes[kind] for kind in kinds}


def _hidden_units(ff: torch.nn.Module) -> int:
    """Hidden units of an ESPnet position-wise FFN (linear, conv1d or conv1d-linear)."""
    w_1 = ff.w_1
    return w_1.out_features if isinstance(w_1, torch.nn.Linear) else w_1.out_channels


def _subnet_state(model: SupernetASRModel, target: Dict[str, torch.Tensor],
                  kept: List[int]) -> Dict[str, torch.Tensor]:
    """Weights for every key of the exported model ``target``, from the supernet's
    active subnet: renumbered blocks, sliced units and front-end channels, the subnet's
    BN statistics and CTC head."""
    encoder, source = model.encoder, model.state_dict()
    gates, kinds = encoder.gates(encoder.active_mask), encoder.layout.kinds
    channels = getattr(encoder, "active_frontend_channels", None)
    if channels is not None:  # the narrow front end's slices of the shared weights
        source.update({f"encoder.embed.{k}": v for k, v in
                       sliced_parameters(encoder.embed, channels).items()})
    state = {}
    for key in target:
        match = re.match(r"encoder\.encoders\.(\d+)\.([^.]+)\.?(.*)$", key)
        if match:
            b = kept[int(match.group(1))]
            attr, rest = match.group(2), match.group(3)
            src_key = f"encoder.encoders.{b}.{attr}" + (f".{rest}" if rest else "")
            value = source[src_key]
            if attr == "conv_module" and rest in ("norm.running_mean", "norm.running_var"):
                norm = encoder.encoders[b].conv_module.norm
                mean, var = norm.slot_statistics(norm.active_slot)
                value = mean if rest.endswith("mean") else var
            gate = (gates[len(kinds) * b + kinds.index(_MODULE_OF_ATTR[attr])]
                    if attr in _MODULE_OF_ATTR else None)
            if isinstance(gate, UnitSlice):
                value = _slice(value, rest, gate)
        elif key.startswith("ctc.ctc_lo.") and isinstance(model.ctc.ctc_lo, SwitchableLinear):
            value = getattr(model.ctc.ctc_lo.active_head(), key.rsplit(".", 1)[1])
        else:
            value = source[key]
        state[key] = value.detach().clone()
    return state


def _slice(value: torch.Tensor, name: str, gate: UnitSlice) -> torch.Tensor:
    """The kept part of parameter ``name`` (within an FFN or attention module)."""
    if _ROWS.search(name):
        return value.index_select(0, gate.rows.to(value.device))
    if _COLUMNS.search(name):
        return value.index_select(1, gate.rows.to(value.device))
    if _HEADS.search(name):
        return value.index_select(0, gate.units.to(value.device))
    return value
