"""Sparsity levels as a supernet model's named subnets (Omni-sparsity, Yang et al. 2022).

Mixed into ``SupernetASRModel`` and ``SupernetTransducerModel``: once an
:class:`~espnet_supernet.sparsity.omni_sparsity.OmniSparsity` is attached
(``sparsity: omni`` in the training config), the model's named subnets are the sparsity
levels, sparsest first (``sp85`` ... ``sp0``), all on the encoder's largest size. The
sandwich rule then trains the dense level, the sparsest and random ones each step on the
shared weights, validation reports every level, and ``asr_inference --subnet sp70``
decodes a level (``encode`` applies its masks).
"""

import contextlib
from typing import ContextManager, Dict, Tuple

import torch

from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d
from espnet_supernet.sparsity.omni_sparsity import OmniSparsity


class SparseSubnetsMixin:
    """Named subnets = sparsity levels when ``set_sparsity`` was called.

    The host model sets ``self.sparsity = None`` in its constructor and calls
    ``_activate_level`` from ``set_subnet`` and ``sparse_weights()`` around its encoder
    forwards.
    """

    def set_sparsity(self, sparsity: OmniSparsity) -> None:
        """Attach the masks; the named subnets become the levels (sparsest first)."""
        self.sparsity = sparsity
        sparsity.bind(self.encoder)
        self.encoder_size = self.encoder.subnet_names[-1]
        self.subnet_names = list(reversed(sparsity.level_names))
        self.level_norms = []  # per-level BatchNorm statistics: one slot per level
        if sparsity.per_level_bn and getattr(self.encoder, "bn_stats", None) == "per_size":
            self.level_norms = [m for m in self.encoder.modules()
                                if isinstance(m, SwitchableBatchNorm1d)]
            for norm in self.level_norms:
                norm.resize_slots(len(self.subnet_names))
            # a load re-activates the encoder's size: put the active level's slot back
            self.register_load_state_dict_post_hook(
                lambda model, keys: model.set_subnet(model.active_subnet))
        self.set_subnet(None)

    def _activate_level(self, name: str) -> None:
        """The encoder's largest size with level ``name``'s masks (and BatchNorm
        statistics, with ``per_level_bn``)."""
        self.encoder.set_named_subnet(self.encoder_size)
        self.sparsity.activate(name)
        for norm in self.level_norms:
            norm.active_slot = self.subnet_names.index(name)

    def set_block_levels(self, block_levels: Dict[int, int]) -> None:
        """Activate a per-layer configuration (encoder block -> level index, e.g.
        ``sparsity_search``'s): a uniform one is that level (its BatchNorm statistics with
        ``per_level_bn``), a mixed one the dense level's statistics (what its export
        carries)."""
        levels = {int(block_levels.get(b, 0)) for b in self.sparsity.blocks}
        if len(levels) == 1:
            self.set_subnet(self.sparsity.level_names[levels.pop()])
            return
        self.set_subnet(None)
        self.sparsity.set_layerwise(block_levels)

    def mix_levels(self, slot: str, step: int) -> None:
        """With ``mixed_levels``, a random slot (``rand<i>``) of training step ``step``
        uses a level per block drawn from the step and the slot (the same on every DDP
        rank); the other slots keep their uniform level."""
        if self.sparsity is None or not self.sparsity.mixed_levels or not slot.startswith("rand"):
            return
        for norm in self.level_norms:  # a per-layer mix is no level: the shared statistics
            norm.active_slot = None
        self.sparsity.set_layerwise(self.sparsity.sample_layerwise(
            step * 1_000_003 + int(slot[len("rand"):]) + 1))

    def sparse_weights(self) -> ContextManager[None]:
        """Context in which the encoder computes with the active level's weights."""
        return contextlib.nullcontext() if self.sparsity is None else self.sparsity.applied()

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """ESPnet's ``encode`` (used by decoding) under the active level's masks."""
        with self.sparse_weights():
            return super().encode(speech, speech_lengths)
