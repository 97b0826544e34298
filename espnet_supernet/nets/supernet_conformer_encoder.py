"""Conformer supernet encoder with prunable modules (Dynamic Encoder Size).

Implements the supernet of Xu et al., "Dynamic Encoder Size Based on Data-Driven Layer-wise
Pruning for Speech Recognition" (Interspeech 2024): every Conformer block has four prunable
modules (macaron FFN, MHSA, conv, FFN; fewer where the stock options ``macaron_style`` /
``use_cnn_module`` leave them out); module j of a block with gate z computes
``x <- x + c_j * z * f_j(x)`` (c = ``ff_scale`` for the FFNs, 1 otherwise) and a module
with z = 0 is not run at all. The block's final LayerNorm stays while any of its modules
runs; a block with all its modules off is skipped entirely, like a layer of a shallower
Conformer. ESPnet's own options work as in stock ESPnet on top of the subnet masks:
stochastic depth and layer drop (training), intermediate CTC and self-conditioning (for a
subnet, see ``conformer_blocks.interctc_feeds``).

An elastic front end: ``subnet_frontend_channels`` gives named subnets a convolutional
front end of fewer channels (``elastic_subsampling``), so that a small size does not pay
the full front end (about 0.37 of a 12 x 256 encoder's FLOPs).

Component-wise elasticity (OrthoSoftmax, Xu et al., ICASSP 2025): with ``ffn_chunks`` > 1
and ``prune_heads`` a subnet may keep some FFN hidden chunks and attention heads of a
module; it then computes with the sliced weights (see ``elastic_feed_forward`` and
``elastic_attention``), not with masks on full-size results.

The class extends ESPnet's ``ConformerEncoder`` and keeps its parameter names
(``encoders.N.feed_forward_macaron...``), so a stock Conformer state dict loads with
``strict=True`` and a subnet of whole blocks exports as a stock encoder.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from typeguard import typechecked

from espnet_supernet.nets.conformer_blocks import (
    FrontendOutput,
    encoder_blocks_forward,
    frontend_forward,
)
from espnet_supernet.nets.elastic_attention import check_sliceable
from espnet_supernet.nets.elastic_subsampling import check_elastic, subsampling_channels
from espnet_supernet.nets.fast_dropout import use_fast_dropout
from espnet_supernet.nets.subnet_space import UnitLayout, block_kinds, build_subnet_table
from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d
from espnet_supernet.nets.unit_gates import Gate, UnitSlice
from espnet_supernet.nets.vgg_subsampling import (
    DEFAULT_VGG_CHANNELS,
    VGG_INPUT_LAYERS,
    install_vgg_frontend,
)

BN_STATS = ("per_size", "shared")
__all__ = ["FrontendOutput", "Gate", "SupernetConformerEncoder"]


class SupernetConformerEncoder(ConformerEncoder):
    """Conformer encoder whose modules can be switched off per subnet.

    Args:
        (all of ``ConformerEncoder``'s arguments, same meaning and defaults, except
        ``ctc_trim`` and ``concat_after``, which raise, and ``macaron_style``, which
        defaults to true, the papers' block; stock's default is false: give it when a
        stock config leaves it out). ``macaron_style`` and ``use_cnn_module`` decide the
        K modules of a block (4, 3 or 2). ``layer_drop_rate`` drops each block with that
        probability in training, as ESPnet's ``MultiSequential`` does (stock
        ``ConformerEncoder`` in espnet 202511 loops over its blocks itself and so
        ignores the option).
        subnet_sizes: named sizes as module counts, e.g. ``[16, 32, 48]``; each is built
            with ``subnet_rule``. Default: only the full network.
        subnet_masks: explicit 0/1 masks by name (length K * num_blocks, block order
            macaron FFN, MHSA, conv, FFN, those the block has; or one value per unit, see
            ``ffn_chunks``); override sizes of the same name.
        subnet_rule: ``"layers"`` (whole blocks evenly spread) or ``"modules"`` (modules
            evenly spread), see :mod:`espnet_supernet.nets.subnet_space`.
        subnet_names: named subnets that start as the full network and are filled by a
            learned selection (set by the task for OrthoSoftmax's budgets).
        bn_stats: ``"per_size"`` keeps BatchNorm statistics per named subnet,
            ``"shared"`` uses one set for all (the stock behaviour).
        ffn_chunks: split each FFN's hidden layer into this many prunable chunks
            (``linear_units`` must divide evenly; 1 = whole modules only; needs
            ``positionwise_layer_type: linear``).
        prune_heads: make each attention head a prunable unit.
        adaptive_ffn_dropout: scale an FFN's hidden dropout by its fraction of kept
            chunks (OrthoSoftmax's adaptive FF dropout).
        input_layer: ESPnet's choices, or ``"vgg4"``: the papers' light VGG front end
            (:mod:`espnet_supernet.nets.vgg_subsampling`), with
        vgg_channels: its four convolutions' channels (the authors' 32, 64, 64, 32) and
        vgg_activation: ``relu`` (the authors') or ``silu``.
        subnet_frontend_channels: ``{name: channels}``: the named subnet runs the
            convolutional front end (``input_layer`` conv2d, conv2d2, conv2d6, conv2d8)
            at its first ``channels`` of ``output_size`` channels; the others at all.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: Optional[str] = "conv2d",
        normalize_before: bool = True,
        concat_after: bool = False,
        positionwise_layer_type: str = "linear",
        positionwise_conv_kernel_size: int = 3,
        macaron_style: bool = True,
        rel_pos_type: str = "legacy",
        pos_enc_layer_type: str = "rel_pos",
        selfattention_layer_type: str = "rel_selfattn",
        activation_type: str = "swish",
        use_cnn_module: bool = True,
        zero_triu: bool = False,
        cnn_module_kernel: int = 31,
        padding_idx: int = -1,
        interctc_layer_idx: Optional[List[int]] = None,
        interctc_use_conditioning: bool = False,
        ctc_trim: bool = False,
        stochastic_depth_rate: Union[float, List[float]] = 0.0,
        layer_drop_rate: float = 0.0,
        max_pos_emb_len: int = 5000,
        qk_norm: bool = False,
        use_flash_attn: bool = True,
        subnet_sizes: Optional[List[int]] = None,
        subnet_masks: Optional[Dict[str, List[int]]] = None,
        subnet_rule: str = "layers",
        subnet_names: Optional[List[str]] = None,
        bn_stats: str = "per_size",
        ffn_chunks: int = 1,
        prune_heads: bool = False,
        adaptive_ffn_dropout: bool = True,
        vgg_channels: List[int] = list(DEFAULT_VGG_CHANNELS),
        vgg_activation: str = "relu",
        subnet_frontend_channels: Optional[Dict[str, int]] = None,
    ):
        unsupported = {"ctc_trim": ctc_trim, "concat_after": concat_after}
        bad = [name for name, used in unsupported.items() if used]
        if bad:
            raise ValueError(
                f"supernet_conformer does not support {', '.join(bad)}: ctc_trim shortens "
                "the sequence per subnet and concat_after gives the attention a module of "
                "its own that a subnet cannot skip; remove these options from encoder_conf"
            )
        if bn_stats not in BN_STATS:
            raise ValueError(f"bn_stats must be one of {BN_STATS}, got {bn_stats!r}")
        if ffn_chunks < 1 or linear_units % ffn_chunks:
            raise ValueError(f"ffn_chunks must divide linear_units={linear_units}, got "
                             f"{ffn_chunks}")
        if ffn_chunks > 1 and positionwise_layer_type != "linear":
            raise ValueError("ffn_chunks > 1 needs positionwise_layer_type: linear")
        super().__init__(
            input_size=input_size,
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            input_layer=None if input_layer in VGG_INPUT_LAYERS else input_layer,
            normalize_before=normalize_before,
            positionwise_layer_type=positionwise_layer_type,
            positionwise_conv_kernel_size=positionwise_conv_kernel_size,
            macaron_style=macaron_style,
            rel_pos_type=rel_pos_type,
            pos_enc_layer_type=pos_enc_layer_type,
            selfattention_layer_type=selfattention_layer_type,
            activation_type=activation_type,
            use_cnn_module=use_cnn_module,
            zero_triu=zero_triu,
            cnn_module_kernel=cnn_module_kernel,
            padding_idx=padding_idx,
            interctc_layer_idx=list(interctc_layer_idx or []),
            interctc_use_conditioning=interctc_use_conditioning,
            stochastic_depth_rate=stochastic_depth_rate,
            layer_drop_rate=layer_drop_rate,
            max_pos_emb_len=max_pos_emb_len,
            qk_norm=qk_norm,
            use_flash_attn=use_flash_attn,
        )
        if input_layer in VGG_INPUT_LAYERS:
            install_vgg_frontend(self, input_size, output_size, vgg_channels, vgg_activation)
        self.input_size = input_size
        self.num_blocks = num_blocks
        self.bn_stats = bn_stats
        self.adaptive_ffn_dropout = adaptive_ffn_dropout
        if prune_heads:
            check_sliceable(self.encoders[0].self_attn)
        units = {"ffn_macaron": ffn_chunks, "mhsa": attention_heads if prune_heads else 1,
                 "conv": 1, "ffn": ffn_chunks}
        kinds = block_kinds(macaron_style, use_cnn_module)
        self.layout = UnitLayout(tuple(units[k] for k in kinds), num_blocks, kinds)
        table = build_subnet_table(self.layout, subnet_sizes, subnet_masks, subnet_rule,
                                   subnet_names)
        self.subnet_names: List[str] = list(table)
        self.subnet_frontend_channels: Dict[str, int] = {}
        for name, channels in (subnet_frontend_channels or {}).items():
            if str(name) not in self.subnet_names:
                raise ValueError(f"subnet_frontend_channels names {name!r}, not a subnet of "
                                 f"this supernet ({', '.join(self.subnet_names)})")
            check_elastic(self.embed, channels)
            if channels < subsampling_channels(self.embed):
                self.subnet_frontend_channels[str(name)] = channels
        self._active_channels: Optional[int] = None
        # Persistent so that learned masks travel with the checkpoint.
        self.register_buffer(
            "subnet_mask_table", torch.tensor(list(table.values()), dtype=torch.float)
        )
        for layer in self.encoders:
            if layer.conv_module is not None:
                layer.conv_module.norm = SwitchableBatchNorm1d.from_batch_norm(
                    layer.conv_module.norm, len(self.subnet_names)
                )
        self._register_load_state_dict_pre_hook(self._keep_table_if_missing)
        self.register_load_state_dict_post_hook(lambda module, keys: module._after_load())
        self._mask_rows: List[List[int]] = []
        self._gate_cache: Dict[Tuple[int, ...], List[Gate]] = {}
        self._cache_rows()
        self._active_mask: List[int] = [1] * self.layout.num_units
        self._active_slot: Optional[int] = None
        self._size_statistics = True
        use_fast_dropout(self)
        self.set_subnet(None)

    # ------------------------------------------------------------------ subnets
    @property
    def num_modules(self) -> int:
        """M = K x num_blocks prunable modules (K = ``len(layout.kinds)``)."""
        return self.layout.num_modules

    @property
    def num_units(self) -> int:
        """N prunable units (= M without ``ffn_chunks`` / ``prune_heads``)."""
        return self.layout.num_units

    def subnet_mask(self, name: str) -> List[int]:
        """The 0/1 unit mask (length N) of a named subnet (a copy)."""
        if name not in self.subnet_names:
            raise KeyError(
                f"unknown subnet {name!r}; this supernet has {', '.join(self.subnet_names)}"
            )
        return list(self._mask_rows[self.subnet_names.index(name)])

    def _cache_rows(self) -> None:
        """Mirror ``subnet_mask_table`` as Python lists (no device sync per switch)."""
        self._mask_rows = [[int(v) for v in row] for row in self.subnet_mask_table.tolist()]
        self._gate_cache.clear()

    def set_subnet_masks(self, masks: Dict[str, Sequence[float]]) -> None:
        """Overwrite the masks (module or unit level) of existing named subnets (used by
        selection methods)."""
        for name, mask in masks.items():
            self.subnet_mask(name)  # raises on an unknown name
            row = self.layout.as_units(mask)
            self.subnet_mask_table[self.subnet_names.index(name)] = torch.tensor(row)
        self._cache_rows()
        self.set_subnet(self._active_mask)

    def set_subnet(self, mask: Optional[Sequence[float]]) -> None:
        """Activate a subnet in place.

        Args:
            mask: M = K x num_blocks values in {0, 1} (block 0: macaron FFN, MHSA, conv,
                FFN, those it has; then block 1, ...), or N values, one per unit (see ``layout``), or
                None for every module on. A mask equal to a named subnet's also selects
                that subnet's BatchNorm statistics.
        """
        full = mask is None
        mask = [1] * self.num_units if full else self.layout.as_units(mask)
        row = self._mask_rows.index(mask) if mask in self._mask_rows else None
        slot = row if self.bn_stats == "per_size" and self._size_statistics else None
        self._active_mask, self._active_slot = mask, slot
        self._active_channels = (None if row is None else
                                 self.subnet_frontend_channels.get(self.subnet_names[row]))
        for layer in self.encoders:
            if layer.conv_module is not None:
                layer.conv_module.norm.active_slot = slot

    def use_size_statistics(self, enabled: bool) -> None:
        """Whether named subnets use their own BatchNorm statistics (``bn_stats:
        per_size``) or the shared ones, e.g. while a selection method moves the masks."""
        self._size_statistics = enabled
        self.set_subnet(self._active_mask)

    def reset_size_statistics(self) -> None:
        """Start every named subnet's BatchNorm statistics from the shared ones."""
        for layer in self.encoders:
            norm = getattr(layer.conv_module, "norm", None)
            if isinstance(norm, SwitchableBatchNorm1d):
                norm.reset_slots()

    def set_named_subnet(self, name: str) -> None:
        """Activate the named subnet (see ``subnet_names``) and its front-end width."""
        self.set_subnet(self.subnet_mask(name))
        self._active_channels = self.subnet_frontend_channels.get(name)

    def set_frontend_channels(self, channels: Optional[int]) -> None:
        """Run the front end of the active subnet at ``channels`` channels (None: all),
        e.g. for a subnet given by its mask; ``set_subnet`` resets it."""
        if channels is not None:
            check_elastic(self.embed, channels)
            if channels == subsampling_channels(self.embed):
                channels = None
        self._active_channels = channels

    @property
    def active_frontend_channels(self) -> Optional[int]:
        """Front-end channels of the active subnet (None: all)."""
        return self._active_channels

    def frontend_channels_of(self, name: str) -> Optional[int]:
        """Front-end channels of a named subnet (None: all)."""
        return self.subnet_frontend_channels.get(name)

    @property
    def active_mask(self) -> List[int]:
        """The active 0/1 unit mask (a copy)."""
        return list(self._active_mask)

    def gates(self, mask: Sequence[int]) -> List[Gate]:
        """The M module gates of a unit mask: 0 (skipped), 1 (whole module) or a
        :class:`UnitSlice` of the kept units (cached per mask)."""
        key = tuple(int(v) for v in mask)
        if key not in self._gate_cache:
            gates: List[Gate] = []
            for m in range(self.num_modules):
                a, b = self.layout.module_span(m)
                kept = [u for u in range(b - a) if key[a + u]]
                if len(kept) in (0, b - a):
                    gates.append(1 if kept else 0)
                    continue
                width = self._unit_width(self.layout.kind(m))
                rows = [u * width + i for u in kept for i in range(width)]
                gates.append(UnitSlice.of(rows, kept, len(kept) / (b - a),
                                          next(self.parameters()).device))
            self._gate_cache[key] = gates
        return list(self._gate_cache[key])

    def _apply(self, fn, *args, **kwargs):
        self._gate_cache.clear()  # cached unit indices live on the old device
        return super()._apply(fn, *args, **kwargs)

    def _unit_width(self, kind: str) -> int:
        """Hidden rows per unit of module type ``kind`` (FFN chunk or head width)."""
        if kind == "mhsa":
            return self.encoders[0].self_attn.d_k
        units = self.layout.per_module[self.layout.kinds.index(kind)]
        return self.encoders[0].feed_forward.w_1.out_features // units

    def _after_load(self) -> None:
        """Loaded masks may differ: refresh the cache and the active BN slot."""
        self._cache_rows()
        self.set_subnet(self._active_mask)

    def _keep_table_if_missing(self, state_dict, prefix, *args) -> None:
        key = prefix + "subnet_mask_table"
        if key not in state_dict:  # a stock ConformerEncoder state dict
            state_dict[key] = self.subnet_mask_table.clone()
        elif state_dict[key].shape != self.subnet_mask_table.shape:
            raise RuntimeError(
                f"checkpoint has {state_dict[key].shape[0]} subnets of "
                f"{state_dict[key].shape[1]} modules, but this config defines "
                f"{len(self.subnet_names)} of {self.num_modules}: use the config the "
                "checkpoint was trained with"
            )

    # ------------------------------------------------------------------ forward
    def forward_frontend(self, xs_pad: torch.Tensor, ilens: torch.Tensor) -> FrontendOutput:
        """Subsampling and positional encoding, run once per batch (at the active
        subnet's front-end width; a subnet of another width recomputes it, see
        :meth:`frontend_at`).

        Args:
            xs_pad: features (B, L, input_size).
            ilens: lengths (B,).
        """
        front = frontend_forward(self, xs_pad, ilens, self._active_channels)
        return front._replace(inputs=(xs_pad, ilens, {front.channels: front}))

    def frontend_at(self, front: FrontendOutput, channels: Optional[int]) -> FrontendOutput:
        """``front`` computed at ``channels`` front-end channels (None: all): itself if it
        was, else from its inputs, once per width and batch."""
        if front.channels == channels:
            return front
        if front.inputs is None:
            raise ValueError(f"this front-end output was computed at {front.channels} "
                             f"channels and the subnet needs {channels}; pass the output "
                             "of this encoder's forward_frontend")
        xs_pad, ilens, widths = front.inputs
        if channels not in widths:
            widths[channels] = frontend_forward(self, xs_pad, ilens, channels)
        return widths[channels]._replace(inputs=front.inputs)

    def forward_subnet(
        self, front: FrontendOutput, gates: Optional[Sequence[Gate]] = None,
        ctc: Optional[torch.nn.Module] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run the blocks of a subnet on a shared front-end output.

        Args:
            front: output of :meth:`forward_frontend`.
            gates: M gates (see :mod:`espnet_supernet.nets.unit_gates`): 0 skips the
                module (its forward is never called), 1 runs it plainly, a scalar tensor
                scales its output, a per-unit tensor weights its units (soft gates of
                selection methods), a ``UnitSlice`` runs the kept units with sliced
                weights. Default: the active mask's gates.
            ctc: the model's CTC, needed with ``interctc_use_conditioning``.

        Returns:
            encoder output (B, T', D) and its lengths (B,).
        """
        xs, lens, _ = self.forward_subnet_intermediate(front, gates, ctc)
        return xs, lens

    def forward_subnet_intermediate(
        self, front: FrontendOutput, gates: Optional[Sequence[Gate]] = None,
        ctc: Optional[torch.nn.Module] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, List[Tuple[int, torch.Tensor]]]:
        """:meth:`forward_subnet` and the intermediate outputs ``[(layer, (B, T', D))]``
        of ``interctc_layer_idx`` that the subnet computes (``interctc_feeds``)."""
        gates = self.gates(self._active_mask) if gates is None else gates
        front = self.frontend_at(front, self._active_channels)
        return encoder_blocks_forward(self, front, self.block_gates(gates),
                                      self.adaptive_ffn_dropout, self.layout.kinds, ctc)

    def block_gates(self, gates: Sequence[Gate]) -> List[Sequence[Gate]]:
        """The M gates split per block (K each, ``layout.kinds`` order)."""
        if len(gates) != self.num_modules:
            raise ValueError(f"expected {self.num_modules} gates, got {len(gates)}")
        k = self.layout.per_block
        return [gates[k * i: k * (i + 1)] for i in range(self.num_blocks)]

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        ctc: Optional[torch.nn.Module] = None,
        return_all_hs: bool = False,
    ) -> Tuple[Union[torch.Tensor, Tuple[torch.Tensor, list]], torch.Tensor, None]:
        """Encode with the active subnet.

        Args:
            xs_pad: features (B, L, input_size).
            ilens: lengths (B,).
            prev_states, masks, ctc, return_all_hs: as ``ConformerEncoder``'s; ``ctc`` is
                used by ``interctc_use_conditioning``; ``masks`` and ``return_all_hs``
                are not supported.

        Returns:
            output (B, T', D) (with ``interctc_layer_idx``: as stock, the pair of it and
            the intermediate outputs ``[(layer, (B, T', D))]``), lengths (B,), None.
        """
        if masks is not None or return_all_hs:
            raise NotImplementedError("supernet_conformer computes masks from ilens itself")
        xs, olens, intermediate = self.forward_subnet_intermediate(
            self.forward_frontend(xs_pad, ilens), ctc=ctc)
        return ((xs, intermediate) if intermediate else xs), olens, None
