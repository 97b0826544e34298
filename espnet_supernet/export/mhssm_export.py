"""Export one (depth, width) size of a TODM supernet as a standalone, smaller model.

The export keeps the size's first ``depth`` MH-SSM blocks and, in each, the first
``width`` fraction of every FFN's hidden units and of every SSM head's channels: a
``supernet_mhssm`` encoder built with exactly those sizes (``num_blocks``,
``linear_units``, ``ssm_head_dim``) and no other subnet, so the model holds only the
weights the size computes with, runs it at full speed and streams (as the supernet
streams at that size). The transducer
decoder, joint network, front end and normalisation are copied as they are; the model
stays ``model: supernet_transducer`` (ESPnet's own transducer model needs
``warprnnt_pytorch`` to build) and decodes with ``asr_inference``.
"""

import copy
import re
from typing import Dict

import torch

from espnet_supernet.export.subnet_export import SUPERNET_CONFIG_KEYS, SubnetExport

_BLOCK_KEY = re.compile(r"encoder\.encoders\.(\d+)\.(.+)$")
_FFN_ROWS = re.compile(r"feed_forward(_macaron)?\.w_1\.(weight|bias)$")
_FFN_COLUMNS = re.compile(r"feed_forward(_macaron)?\.w_2\.weight$")
_SSM_ROWS = re.compile(r"mhssm\.(in_proj\.(weight|bias)|ssm\.\w+)$")
_SSM_COLUMNS = re.compile(r"mhssm\.out_proj\.weight$")


def exported_mhssm_config(train_config: dict, depth: int, ffn_units: int,
                          head_dim: int) -> dict:
    """The exported model's config: the same model with a smaller encoder."""
    config = copy.deepcopy(train_config)
    encoder_conf = dict(config["encoder_conf"])
    encoder_conf.pop("subnets", None)
    encoder_conf.update(num_blocks=depth, linear_units=ffn_units, ssm_head_dim=head_dim)
    config["encoder_conf"] = encoder_conf
    config["model_conf"] = {k: v for k, v in (config.get("model_conf") or {}).items()
                            if k != "train_only"}
    for key in SUPERNET_CONFIG_KEYS:
        config.pop(key, None)
    return config


def export_mhssm_subnet(model: torch.nn.Module, train_config: dict, name: str,
                        build_model) -> SubnetExport:
    """Export size ``name`` of a ``supernet_transducer`` model.

    Args:
        model: the trained TODM supernet (``encoder: supernet_mhssm``).
        train_config: its ``config.yaml`` contents.
        name: a size (``model.subnet_names``).
        build_model: ``config dict -> model`` (the exported weights are checked by a strict
            load into it).

    Raises:
        ValueError: unknown size (the message lists the valid ones), or a model with
            sparsity levels (export those with ``--sparsity_level``).
    """
    if getattr(model, "sparsity", None) is not None:
        raise ValueError("this supernet's subnets are sparsity levels: export them as "
                         "sparsity levels (bin/export --subnet spNN)")
    encoder = model.encoder
    if str(name) not in encoder.subnets:
        raise ValueError(f"unknown subnet {name!r}; valid names: "
                         f"{', '.join(encoder.subnet_names)}")
    spec = encoder.subnets[str(name)]
    ffn_units, head_dim = encoder.widths(spec)
    config = exported_mhssm_config(train_config, spec["depth"], ffn_units, head_dim)
    target = build_model(config)
    ssm_channels, gated_channels = encoder.encoders[0].self_attn.mhssm.width_channels(head_dim)
    source = model.state_dict()
    state: Dict[str, torch.Tensor] = {}
    for key in target.state_dict():
        value = source[key]
        if _BLOCK_KEY.match(key):
            if _FFN_ROWS.search(key):
                value = value[:ffn_units]
            elif _FFN_COLUMNS.search(key):
                value = value[:, :ffn_units]
            elif _SSM_ROWS.search(key):
                value = value.index_select(0, ssm_channels)
            elif _SSM_COLUMNS.search(key):
                value = value.index_select(1, gated_channels)
        state[key] = value.detach().clone()
    target.load_state_dict(state, strict=True)  # shapes and names must match exactly
    return SubnetExport(str(name), "supernet_mhssm", list(range(spec["depth"])),
                        [{"ffn": ffn_units, "ssm_head_dim": head_dim}] * spec["depth"],
                        config, state, sum(p.numel() for p in target.parameters()))
