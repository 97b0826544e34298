"""Omni-sparsity: one set of weights pruned to many sparsity levels, trained jointly.

Omni-sparsity DNN (Yang et al., ICASSP 2022): a single network whose weights are shared
by sub-networks of several sparsity levels; each training step trains some of them
(here the sandwich rule: dense, sparsest and random levels, as the model's named
subnets), and after training a search picks per-layer sparsities under a budget. The
paper leaves the masking details open; this implementation uses:

- magnitude masks computed from the shared weights, one ranking per tensor (``scope:
  layer``) or over all of them (``scope: global``), refreshed every ``update_interval``
  training steps and nested across levels (``nested_masks.py``);
- a gradual warm-up of every level from 0 with Zhu & Gupta's cubic schedule
  (``schedule.py``);
- unstructured masks (single weights) or structured ones (``structure: ffn_rows``: whole
  FFN hidden units, i.e. a row of W1 with its bias and the matching column of W2, so a
  structured-sparse model exports as a smaller dense one).

A level is applied by shadowing each masked parameter with ``weight * mask`` in its
module's instance ``__dict__`` for the duration of a forward (``applied()``): the module
code reads ``self.weight`` and gets the masked tensor, gradients flow to the shared
parameter only where the mask keeps it, and parameter names, ``state_dict`` and optimizer
state stay those of the dense model. The dense level (sparsity 0) multiplies nothing.
"""

import contextlib
import logging
import random
import re
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from typeguard import typechecked

from espnet_supernet.sparsity.nested_masks import check_levels, global_keep_levels, keep_levels
from espnet_supernet.sparsity.schedule import cubic_sparsity

# Parameter names (relative to an encoder block ``encoders.<b>.``) of each layer type.
LAYER_TYPES: Dict[str, str] = {
    "ffn": r"feed_forward(_macaron)?\.w_[12]\.weight",
    "mhsa": r"self_attn\.linear_(q|k|v|out|pos)\.weight",
    "ssm": r"self_attn\.mhssm\.(in|out)_proj\.weight",
    "conv": r"conv_module\.pointwise_conv[12]\.weight",
}
STRUCTURES = ("unstructured", "ffn_rows")
SCOPES = ("layer", "global")
_FFN = re.compile(r"encoders\.(\d+)\.(feed_forward(_macaron)?)$")


def level_name(sparsity: float) -> str:
    """Subnet name of a sparsity level: 0.7 -> ``sp70``, 0.875 -> ``sp87.5``."""
    return f"sp{round(sparsity * 100, 2):g}"


@dataclass
class SparseTarget:
    """One ranked unit group: a weight tensor (unstructured) or an FFN's hidden units.

    Attributes:
        name: parameter name (unstructured) or FFN module name (structured), relative to
            the encoder.
        block: encoder block index (the unit of the per-layer search).
        members: (module, attribute, axis) of every masked tensor; axis None: the keep
            tensor has the parameter's shape; 0 / 1: it indexes that dimension.
        units: elements of the keep tensor.
        numel: parameters covered by the mask (all members).
    """

    name: str
    block: int
    members: List[Tuple[torch.nn.Module, str, Optional[int]]]
    units: int
    numel: int


def _broadcast(mask: torch.Tensor, param: torch.Tensor, axis: Optional[int]) -> torch.Tensor:
    """``mask`` of one target reshaped to broadcast over ``param``."""
    if axis is None:
        return mask
    shape = [1] * param.dim()
    shape[axis] = -1
    return mask.view(shape)


class OmniSparsity(torch.nn.Module):
    """Nested magnitude masks of an encoder's weights at several sparsity levels.

    Args:
        levels: sparsity levels (fractions of each target's weights set to zero),
            e.g. ``[0.0, 0.3, 0.5, 0.7, 0.85]``; they name the subnets ``sp0``, ``sp30``...
        layer_types: which weights take part, among ``ffn`` (both FFNs' W1/W2), ``mhsa``
            (q/k/v/out/pos projections), ``conv`` (the conv module's pointwise convs),
            ``ssm`` (MH-SSM input/output projections). Types the encoder does not have
            are ignored; none found is an error.
        scope: ``layer`` (each tensor keeps its own largest weights) or ``global`` (one
            magnitude threshold for all targets, so layers end up with different
            sparsities).
        structure: ``unstructured`` or ``ffn_rows`` (whole FFN hidden units; needs
            ``layer_types: [ffn]``).
        update_interval: training steps between mask refreshes.
        warmup_steps: length of the cubic warm-up in steps; None: ``warmup_fraction`` of
            the training steps (known once the trainer starts).
        warmup_fraction: see ``warmup_steps``.
        warmup_start: step at which the warm-up starts (dense before).
        mixed_levels: the sandwich rule's random slots draw a level per encoder block
            (uniformly, seeded by the step), as Omni-sparsity trains the per-layer mixes
            that a search returns; the dense and the sparsest slots stay uniform.
        per_level_bn: each level keeps its own BatchNorm statistics (conv modules;
            with the encoder's ``bn_stats: per_size``), re-estimated per level like a
            size's (stage 12); a mixed per-layer configuration uses the shared ones.
            False: every level uses the encoder's one set (before this option).

    Buffers (saved with the model): ``keep{i}`` per target (uint8 keep levels, see
    ``nested_masks.py``), ``refreshed_at`` (step of the last refresh, -1: never),
    ``warmup_total`` (the resolved warm-up length, -1: unknown).
    """

    @typechecked
    def __init__(
        self,
        levels: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 0.85),
        layer_types: Sequence[str] = ("ffn", "mhsa", "conv", "ssm"),
        scope: str = "layer",
        structure: str = "unstructured",
        update_interval: int = 50,
        warmup_steps: Optional[int] = None,
        warmup_fraction: float = 0.3,
        warmup_start: int = 0,
        mixed_levels: bool = False,
        per_level_bn: bool = True,
    ):
        super().__init__()
        self.levels = check_levels(levels)
        unknown = [t for t in layer_types if t not in LAYER_TYPES]
        if unknown or not layer_types:
            raise ValueError(f"unknown layer types {unknown}; choose from {list(LAYER_TYPES)}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        if structure == "ffn_rows" and list(layer_types) != ["ffn"]:
            raise ValueError("structure: ffn_rows prunes whole FFN hidden units; set "
                             f"layer_types: [ffn] (got {list(layer_types)})")
        if update_interval < 1:
            raise ValueError(f"update_interval must be >= 1, got {update_interval}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        self.layer_types, self.scope, self.structure = list(layer_types), scope, structure
        self.update_interval, self.warmup_steps = update_interval, warmup_steps
        self.warmup_fraction, self.warmup_start = warmup_fraction, warmup_start
        self.mixed_levels = mixed_levels
        self.per_level_bn = per_level_bn
        self.level_names = [level_name(s) for s in self.levels]  # dense first
        self.targets: List[SparseTarget] = []
        self.active: Optional[List[int]] = None  # level index per target; None: dense
        self.register_buffer("refreshed_at", torch.tensor(-1, dtype=torch.long))
        self.register_buffer("warmup_total",
                             torch.tensor(-1 if warmup_steps is None else warmup_steps))

    # ------------------------------------------------------------------ targets
    def bind(self, encoder: torch.nn.Module) -> None:
        """Find the encoder's weights of ``layer_types`` and create their keep buffers."""
        if self.targets:
            raise RuntimeError("OmniSparsity is already bound to an encoder")
        modules = dict(encoder.named_modules())
        if self.structure == "ffn_rows":
            for name, module in modules.items():
                match = _FFN.match(name)
                if match:
                    w1, w2 = module.w_1, module.w_2
                    members = [(w1, "weight", 0), (w2, "weight", 1)]
                    if w1.bias is not None:
                        members.append((w1, "bias", 0))
                    numel = w1.weight.numel() + w2.weight.numel() + (
                        0 if w1.bias is None else w1.bias.numel())
                    self.targets.append(SparseTarget(name, int(match.group(1)), members,
                                                     w1.out_features, numel))
        else:
            pattern = re.compile(r"encoders\.(\d+)\.(%s)$" % "|".join(
                LAYER_TYPES[t] for t in self.layer_types))
            for name, param in encoder.named_parameters():
                match = pattern.match(name)
                if match:
                    owner, attr = name.rsplit(".", 1)
                    self.targets.append(SparseTarget(name, int(match.group(1)),
                                                     [(modules[owner], attr, None)],
                                                     param.numel(), param.numel()))
        if not self.targets:
            raise ValueError(f"sparsity: no weights of layer types {self.layer_types} in "
                             f"{type(encoder).__name__}; its blocks have e.g. "
                             f"{[n for n, _ in encoder.named_parameters()][6:10]}")
        device = next(encoder.parameters()).device
        for i, target in enumerate(self.targets):
            shape = target.members[0][0]._parameters[target.members[0][1]].shape
            shape = shape if target.members[0][2] is None else (target.units,)
            # before the first refresh every weight counts as kept at every level
            self.register_buffer(f"keep{i}", torch.full(shape, len(self.levels),
                                                        dtype=torch.uint8, device=device))
        logging.info("omni-sparsity: %d %s targets (%d prunable parameters), levels %s, "
                     "%s scope", len(self.targets), self.structure, self.prunable_params,
                     self.levels, self.scope)

    @property
    def prunable_params(self) -> int:
        """Parameters covered by the masks."""
        return sum(t.numel for t in self.targets)

    @property
    def blocks(self) -> List[int]:
        """Encoder blocks that have targets, ascending."""
        return sorted({t.block for t in self.targets})

    def keep(self, i: int) -> torch.Tensor:
        """Keep levels of target ``i``."""
        return getattr(self, f"keep{i}")

    # ------------------------------------------------------------------ schedule
    def plan_steps(self, steps_per_epoch: int, max_epoch: int) -> None:
        """Resolve the warm-up length from the training length (called by the model)."""
        if int(self.warmup_total) < 0:
            self.warmup_total.fill_(int(round(self.warmup_fraction * steps_per_epoch
                                              * max_epoch)))

    def effective_levels(self, step: Optional[int] = None) -> List[float]:
        """Every level's sparsity at training ``step`` (None: after the warm-up)."""
        ramp = max(int(self.warmup_total), 0)
        if step is None:
            return list(self.levels)
        return [cubic_sparsity(step, s, self.warmup_start, ramp) for s in self.levels]

    def before_step(self, step: int) -> None:
        """Refresh the masks from the current weights when the interval has passed."""
        last = int(self.refreshed_at)
        if last < 0 or step - last >= self.update_interval or step < last:
            self.refresh(step)

    @torch.no_grad()
    def refresh(self, step: Optional[int] = None) -> None:
        """Recompute every level's masks from the weights' magnitudes at ``step``'s
        warm-up levels (None: the final levels)."""
        levels = self.effective_levels(step)
        scores = [self._scores(t) for t in self.targets]
        if self.scope == "global":
            keeps = global_keep_levels(scores, levels)
        else:
            keeps = [keep_levels(s, levels) for s in scores]
        for i, keep in enumerate(keeps):
            self.keep(i).copy_(keep)
        self.refreshed_at.fill_(0 if step is None else step)

    def _scores(self, target: SparseTarget) -> torch.Tensor:
        """|w| (unstructured) or the L2 norm of each hidden unit's W1 row, bias and W2
        column (structured)."""
        if target.members[0][2] is None:
            module, attr, _ = target.members[0]
            return module._parameters[attr].detach().abs()
        total = 0.0
        for module, attr, axis in target.members:
            value = module._parameters[attr].detach().float()
            dims = [d for d in range(value.dim()) if d != axis]
            total = total + (value.pow(2).sum(dims) if dims else value.pow(2))
        return total.sqrt()

    # ------------------------------------------------------------------ levels
    def level_index(self, name: str) -> int:
        """Index of a level by name (``sp70``)."""
        if name in self.level_names:
            return self.level_names.index(name)
        raise ValueError(f"unknown sparsity level {name!r}; valid names: "
                         f"{', '.join(self.level_names)}")

    def activate(self, name: Optional[str]) -> None:
        """Use one level everywhere (None: dense)."""
        index = 0 if name is None else self.level_index(name)
        self.active = [index] * len(self.targets)

    def set_layerwise(self, block_levels: Dict[int, int]) -> None:
        """Use level index ``block_levels[b]`` in every target of block ``b`` (0 where
        missing), e.g. a configuration found by ``sparsity_search``."""
        bad = {b: i for b, i in block_levels.items() if not 0 <= int(i) < len(self.levels)}
        if bad:
            raise ValueError(f"level indices {bad} outside 0..{len(self.levels) - 1}")
        self.active = [int(block_levels.get(t.block, 0)) for t in self.targets]

    def sample_layerwise(self, seed: int) -> Dict[int, int]:
        """A level index per block, uniform over the levels (``mixed_levels``)."""
        rng = random.Random(seed)
        return {b: rng.randrange(len(self.levels)) for b in self.blocks}

    def masks(self, indices: Optional[Sequence[int]] = None
              ) -> Iterator[Tuple[SparseTarget, Optional[torch.Tensor]]]:
        """(target, keep mask or None when the target is dense) under ``indices``
        (default: the active configuration)."""
        if int(self.refreshed_at) < 0:  # a model never trained with sparsity
            self.refresh(None)
        indices = self.active if indices is None else indices
        for i, target in enumerate(self.targets):
            index = 0 if indices is None else indices[i]
            yield target, (None if self.levels[index] == 0.0 else self.keep(i) > index)

    def nonzero_params(self, indices: Optional[Sequence[int]] = None) -> int:
        """Parameters the masks keep under ``indices`` (default: the active ones)."""
        total = 0
        for target, mask in self.masks(indices):
            if mask is None:
                total += target.numel
            else:
                kept = int(mask.sum())
                total += kept if target.members[0][2] is None else \
                    kept * target.numel // target.units
        return total

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the encoder computes with the active level's masked weights."""
        shadowed = []
        try:
            for target, mask in self.masks():
                if mask is None:
                    continue
                for module, attr, axis in target.members:
                    param = module._parameters[attr]
                    module.__dict__[attr] = param * _broadcast(mask, param, axis)
                    shadowed.append((module, attr))
            yield
        finally:
            for module, attr in shadowed:
                module.__dict__.pop(attr, None)

    @torch.no_grad()
    def bake(self) -> None:
        """Multiply the active level's masks into the weights for good (for export)."""
        for target, mask in self.masks():
            if mask is not None:
                for module, attr, axis in target.members:
                    param = module._parameters[attr]
                    param.mul_(_broadcast(mask, param, axis))
