"""A Conformer encoder whose blocks have their own module shapes: an exported subnet.

A subnet of whole blocks exports as ESPnet's stock ``conformer``. Any other subnet (single
modules, some FFN hidden chunks or attention heads of a module) exports as this class:
each block keeps only the modules the subnet runs, with physically smaller weights
(an FFN with fewer hidden units, an attention with fewer heads), so its parameter count
and compute are the subnet's. Parameter names are ESPnet's (``encoders.N.feed_forward...``),
minus the removed modules (which the blocks no longer have as attributes).
"""

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet.nets.pytorch_backend.transformer.attention import RelPositionMultiHeadedAttention
from espnet.nets.pytorch_backend.transformer.positionwise_feed_forward import (
    PositionwiseFeedForward,
)

from espnet_supernet.nets.conformer_blocks import encoder_blocks_forward, frontend_forward
from espnet_supernet.nets.elastic_subsampling import narrow_subsampling
from espnet_supernet.nets.subnet_space import MODULE_ATTRS, block_kinds
from espnet_supernet.nets.vgg_subsampling import (
    DEFAULT_VGG_CHANNELS,
    VGG_INPUT_LAYERS,
    install_vgg_frontend,
)


def _shrink_attention(att: torch.nn.Module, heads: int) -> None:
    """Give ``att`` (ESPnet multi-head attention) ``heads`` heads of the same width."""
    d_model, inner = att.linear_q.in_features, heads * att.d_k
    att.h = heads
    for name in ("linear_q", "linear_k", "linear_v"):
        setattr(att, name, torch.nn.Linear(d_model, inner))
    att.linear_out = torch.nn.Linear(inner, d_model)
    if isinstance(att, RelPositionMultiHeadedAttention):
        att.linear_pos = torch.nn.Linear(d_model, inner, bias=False)
        att.pos_bias_u = torch.nn.Parameter(torch.zeros(heads, att.d_k))
        att.pos_bias_v = torch.nn.Parameter(torch.zeros(heads, att.d_k))


class PrunedConformerEncoder(ConformerEncoder):
    """Conformer encoder with per-block module sizes (a physically pruned subnet).

    Args:
        input_size: feature dimension.
        blocks: one dict per block with a key per module of the block
            (``subnet_space.block_kinds`` of ``macaron_style`` and ``use_cnn_module``:
            ``ffn_macaron``, ``mhsa``, ``conv``, ``ffn``): hidden units of each FFN, heads
            of the attention (1 .. ``attention_heads``), 1/0 for the conv module; 0 removes
            a module.
        **conformer_conf: every other argument of ESPnet's ``ConformerEncoder``
            (``num_blocks`` is ``len(blocks)``), and the supernet's ``input_layer: vgg4``
            with ``vgg_channels`` and ``vgg_activation`` (see ``vgg_subsampling``), and
            ``frontend_channels``: a convolutional front end (``input_layer`` conv2d ...)
            of that many channels instead of ``output_size`` (``elastic_subsampling``).
    """

    def __init__(self, input_size: int, blocks: List[Dict[str, int]],
                 **conformer_conf: Any):
        if not blocks:
            raise ValueError("pruned_conformer needs at least one block")
        kinds = block_kinds(conformer_conf.get("macaron_style", False),
                            conformer_conf.get("use_cnn_module", True))
        for i, spec in enumerate(blocks):
            if sorted(spec) != sorted(kinds) or not any(spec.values()):
                raise ValueError(
                    f"block {i} of pruned_conformer must give {', '.join(kinds)} with "
                    f"at least one module kept, got {spec}"
                )
        if conformer_conf.get("num_blocks", len(blocks)) != len(blocks):
            raise ValueError(f"num_blocks={conformer_conf['num_blocks']} but "
                             f"{len(blocks)} blocks are given")
        conformer_conf["num_blocks"] = len(blocks)
        self_kinds = kinds
        vgg = dict(channels=conformer_conf.pop("vgg_channels", DEFAULT_VGG_CHANNELS),
                   activation=conformer_conf.pop("vgg_activation", "relu"))
        use_vgg = conformer_conf.get("input_layer") in VGG_INPUT_LAYERS
        if use_vgg:
            conformer_conf["input_layer"] = None
        frontend_channels = conformer_conf.pop("frontend_channels", None)
        super().__init__(input_size, **conformer_conf)
        if use_vgg:
            install_vgg_frontend(self, input_size, conformer_conf.get("output_size", 256),
                                 **vgg)
        if frontend_channels is not None:
            self.embed = narrow_subsampling(self.embed, input_size, int(frontend_channels))
        self.frontend_channels = frontend_channels
        self.blocks = [dict(spec) for spec in blocks]
        self.kinds = self_kinds
        heads = conformer_conf.get("attention_heads", 4)
        for layer, spec in zip(self.encoders, self.blocks):
            for key in self.kinds:
                module_name, norm_name = MODULE_ATTRS[key]
                size, module = spec[key], getattr(layer, module_name)
                if size == 0:  # removed, not None: a strict load then rejects its keys
                    delattr(layer, module_name)
                    delattr(layer, norm_name)
                elif key == "mhsa" and size != heads:
                    if not 0 < size <= heads:
                        raise ValueError(f"mhsa must keep 1..{heads} heads, got {size}")
                    _shrink_attention(module, size)
                elif key in ("ffn", "ffn_macaron") and isinstance(
                        module, PositionwiseFeedForward) and size != module.w_1.out_features:
                    setattr(layer, module_name, PositionwiseFeedForward(
                        module.w_1.in_features, size, module.dropout.p, module.activation))

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        ctc: Optional[torch.nn.Module] = None,
        return_all_hs: bool = False,
    ) -> Tuple[Union[torch.Tensor, Tuple[torch.Tensor, list]], torch.Tensor, None]:
        """Encode (B, L, input_size) features of lengths (B,) -> (B, T', D) (with
        ``interctc_layer_idx``, as stock: and the intermediate outputs), (B,), None."""
        if masks is not None or return_all_hs:
            raise NotImplementedError("pruned_conformer computes masks from ilens itself")
        xs, olens, intermediate = encoder_blocks_forward(
            self, frontend_forward(self, xs_pad, ilens),
            [(1,) * len(self.kinds)] * len(self.encoders), kinds=self.kinds, ctc=ctc)
        return ((xs, intermediate) if intermediate else xs), olens, None
