"""MH-SSM supernet encoder with elastic depth and width (``encoder: supernet_mhssm``), the
encoder of TODM (Shangguan et al., "TODM: Train Once Deploy Many", ICASSP 2024).

A named subnet keeps the first ``depth`` blocks and, in each, the first ``width`` fraction
of every FFN's hidden units and of every MH-SSM head's channels (nested, as in Once-for-All's
elastic width). Dropped blocks are never called; narrower modules compute with the sliced
weights only (contiguous views for the FFNs). The conv modules keep their width. With the
full subnet the output equals :class:`~espnet_supernet.nets.mhssm_encoder.MHSSMEncoder`'s
with the same weights, whose parameter names it keeps.
"""

import math
from typing import Dict, List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet_supernet.nets.elastic_feed_forward import elastic_feed_forward
from espnet_supernet.nets.mhssm_encoder import MHSSMEncoder
from espnet_supernet.nets.unit_gates import UnitSlice


class SupernetMHSSMEncoder(MHSSMEncoder):
    """MH-SSM encoder whose named subnets have fewer blocks and narrower modules.

    Args:
        (all of ``MHSSMEncoder``'s; ``normalize_before`` must be true)
        subnets: ``{name: {"depth": blocks, "width": fraction}}``; a subnet equal to the
            full network is added as ``"full"`` unless one is given. Names are ordered by
            parameter count, so the last is the largest.
    """

    @typechecked
    def __init__(self, input_size: int, subnets: Optional[Dict[str, Dict[str, float]]] = None,
                 **mhssm_conf):
        super().__init__(input_size, **mhssm_conf)
        if not self.normalize_before:
            raise ValueError("supernet_mhssm needs normalize_before: true")
        self.num_blocks = len(self.encoders)
        self.ffn_units = self.encoders[0].feed_forward.w_1.out_features
        self.head_dim = self.encoders[0].self_attn.mhssm.head_dim
        table = {str(n): self._check(str(n), dict(s)) for n, s in (subnets or {}).items()}
        if not any(s == {"depth": self.num_blocks, "width": 1.0} for s in table.values()):
            table["full"] = {"depth": self.num_blocks, "width": 1.0}
        self.subnets = dict(sorted(table.items(), key=lambda kv: self.subnet_params(kv[1])))
        self.subnet_names: List[str] = list(self.subnets)
        self.active = self.subnet_names[-1]

    def _check(self, name: str, spec: Dict[str, float]) -> Dict[str, float]:
        if sorted(spec) != ["depth", "width"]:
            raise ValueError(f"subnet {name}: give depth and width, got {sorted(spec)}")
        depth, width = int(spec["depth"]), float(spec["width"])
        if not 1 <= depth <= self.num_blocks or not 0 < width <= 1:
            raise ValueError(f"subnet {name}: depth must be in 1..{self.num_blocks} and width "
                             f"in (0, 1], got depth {depth}, width {width}")
        return {"depth": depth, "width": width}

    # ------------------------------------------------------------------ subnets
    def set_named_subnet(self, name: str) -> None:
        """Activate a named subnet."""
        if str(name) not in self.subnets:
            raise ValueError(f"unknown subnet {name!r}; valid names: "
                             f"{', '.join(self.subnet_names)}")
        self.active = str(name)

    def widths(self, spec: Dict[str, float]) -> Tuple[int, int]:
        """(FFN hidden units, SSM channels per head) of a subnet spec."""
        return (max(1, math.ceil(spec["width"] * self.ffn_units)),
                max(1, math.ceil(spec["width"] * self.head_dim)))

    def subnet_params(self, spec: Dict[str, float]) -> int:
        """Parameters a subnet computes with (front end and final norm included)."""
        ffn, per_head = self.widths(spec)
        layer = self.encoders[0]
        mhssm = layer.self_attn.mhssm
        d, heads = self._output_size, mhssm.heads
        ssm_per_channel = sum(p[0].numel() for p in mhssm.ssm.parameters())
        block = (2 * (d * ffn + ffn + ffn * d + d)  # two FFNs
                 + (d + 1) * heads * per_head + ssm_per_channel * heads * per_head
                 + (heads // 2 * per_head + 1) * d  # in/out projections, SSM channels
                 + sum(p.numel() for p in layer.conv_module.parameters())
                 + 5 * 2 * d)  # LayerNorms
        fixed = sum(p.numel() for p in self.embed.parameters()) + 2 * d
        return fixed + spec["depth"] * block

    # ------------------------------------------------------------------ forward
    def active_widths(self):
        """(FFN gate, SSM channels per head) of the active subnet: a ``UnitSlice`` of the
        kept hidden units (1 when all are kept) and the MH-SSM width; the whole-utterance
        forward and the stream (``MHSSMEncoder.forward_streaming``) both use it."""
        ffn, per_head = self.widths(self.subnets[self.active])
        gate = 1 if ffn == self.ffn_units else UnitSlice.of(list(range(ffn)), [0],
                                                            ffn / self.ffn_units)
        return gate, per_head

    def active_layers(self):
        """The active subnet's blocks (its first ``depth``)."""
        return self.encoders[: self.subnets[self.active]["depth"]]

    def forward_blocks(self, xs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The active subnet's blocks, at its width, on (B, T', D)."""
        gate, per_head = self.active_widths()
        for layer in self.active_layers():
            xs = self._block(layer, xs, gate, per_head)
        return xs

    @staticmethod
    def _block(layer, x: torch.Tensor, gate, per_head: int) -> torch.Tensor:
        """ESPnet's pre-norm ``EncoderLayer`` with elastic FFNs and MH-SSM."""
        x = x + layer.ff_scale * layer.dropout(
            elastic_feed_forward(layer.feed_forward_macaron, layer.norm_ff_macaron(x), gate))
        x = x + layer.dropout(layer.self_attn.mhssm(layer.norm_mha(x), per_head))
        x = x + layer.dropout(layer.conv_module(layer.norm_conv(x)))
        x = x + layer.ff_scale * layer.dropout(
            elastic_feed_forward(layer.feed_forward, layer.norm_ff(x), gate))
        return layer.norm_final(x)
