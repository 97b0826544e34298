"""Named subnets of a block-structured supernet: masks over prunable modules and units.

A Conformer supernet with ``num_blocks`` blocks has ``M = K * num_blocks`` prunable
modules, ordered block by block as the block's modules run: (macaron FFN, MHSA, conv, FFN)
with ESPnet's defaults (K = 4); without ``macaron_style`` or ``use_cnn_module`` a block has
only the modules the config gives it (:func:`block_kinds`, e.g. K = 3: MHSA, conv, FFN).
A subnet is a 0/1 mask of length M; a named size (e.g. ``"16"``) maps to one mask. This
module builds and checks those masks; learned selection methods fill them later through
the same table.

With component-wise elasticity (OrthoSoftmax, Xu et al. 2025) a module is split into units
(FFN hidden chunks, attention heads; the conv module is one unit), and a subnet is a 0/1
mask over all N units, block by block and module by module (:class:`UnitLayout`). Without
it every module is one unit and N = M.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

MODULE_TYPES = ("ffn_macaron", "mhsa", "conv", "ffn")  # every module a block can have
STATIC_RULES = ("layers", "modules")
# module type -> (the module's attribute, its pre-norm's) in ESPnet's EncoderLayer
MODULE_ATTRS = {"ffn_macaron": ("feed_forward_macaron", "norm_ff_macaron"),
                "mhsa": ("self_attn", "norm_mha"), "conv": ("conv_module", "norm_conv"),
                "ffn": ("feed_forward", "norm_ff")}


def block_kinds(macaron_style: bool = True, use_cnn_module: bool = True) -> Tuple[str, ...]:
    """The modules of a Conformer block, in the order they run, for ESPnet's options."""
    return tuple(k for k in MODULE_TYPES
                 if (k != "ffn_macaron" or macaron_style) and (k != "conv" or use_cnn_module))


class UnitLayout(NamedTuple):
    """How many units each module of a block has, which modules, and the blocks.

    Attributes:
        per_module: units of each of the block's modules (``kinds`` order), e.g.
            (4, 6, 1, 4) for (macaron FFN, MHSA, conv, FFN).
        num_blocks: blocks of the supernet.
        kinds: the block's module types (a subsequence of ``MODULE_TYPES``).
    """

    per_module: Tuple[int, ...]
    num_blocks: int
    kinds: Tuple[str, ...] = MODULE_TYPES

    @property
    def per_block(self) -> int:
        """K modules per block."""
        return len(self.kinds)

    @property
    def num_modules(self) -> int:
        return self.per_block * self.num_blocks

    @property
    def num_units(self) -> int:
        return sum(self.per_module) * self.num_blocks

    def kind(self, module: int) -> str:
        """The type (``MODULE_TYPES``) of module ``module``."""
        return self.kinds[module % self.per_block]

    def units_of(self, module: int) -> int:
        """Units of module ``module``."""
        return self.per_module[module % self.per_block]

    def module_span(self, module: int) -> Tuple[int, int]:
        """[start, stop) of module ``module``'s units in a unit mask."""
        per_block = sum(self.per_module)
        block, kind = divmod(module, self.per_block)
        start = block * per_block + sum(self.per_module[:kind])
        return start, start + self.per_module[kind]

    def module_names(self) -> List[str]:
        """e.g. ``block0.ffn_macaron``, ``block0.mhsa``, ..."""
        return [f"block{m // self.per_block}.{self.kind(m)}" for m in range(self.num_modules)]

    def expand(self, module_mask: Sequence[int]) -> List[int]:
        """Unit mask keeping every unit of the kept modules."""
        return [int(module_mask[m]) for m in range(self.num_modules)
                for _ in range(self.units_of(m))]

    def modules_of(self, unit_mask: Sequence[int]) -> List[int]:
        """Module mask: a module is kept when any of its units is."""
        return [int(any(unit_mask[a:b])) for a, b in map(self.module_span,
                                                          range(self.num_modules))]

    def as_units(self, mask: Sequence[float]) -> List[int]:
        """A module mask (length M) or unit mask (length N), checked, as a unit mask."""
        if len(mask) == self.num_units:
            return check_mask(mask, self.num_units, self)
        return self.expand(check_mask(mask, self.num_modules, self))

    def unit_names(self) -> List[str]:
        """e.g. ``block0.ffn_macaron.chunk1``, ``block0.mhsa.head2``, ``block0.conv``."""
        names = []
        for m, base in enumerate(self.module_names()):
            units = self.units_of(m)
            label = "head" if self.kind(m) == "mhsa" else "chunk"
            names += [base] if units == 1 else [f"{base}.{label}{u}" for u in range(units)]
        return names

    def static_mask(self, size: int, rule: str) -> List[int]:
        """:func:`static_mask` of this layout's blocks (a module mask)."""
        return static_mask(size, self.num_blocks, rule, self.kinds)


def check_mask(
    mask: Sequence[float], total: int, layout: Optional[UnitLayout] = None
) -> List[int]:
    """Validate a 0/1 mask and return it as a list of ints.

    Raises:
        ValueError: if the length is not ``total`` or a value is not 0 or 1.
    """
    values = [float(v) for v in mask]
    if len(values) != total:
        kinds = MODULE_TYPES if layout is None else layout.kinds
        units = ""
        if layout is not None and layout.num_units != layout.num_modules:
            units = (f", or {layout.num_units} units ({dict(zip(kinds, layout.per_module))}"
                     " per block)")
        raise ValueError(
            f"subnet mask has {len(values)} entries, expected {total} ({len(kinds)} modules "
            f"x {total // len(kinds)} blocks: {', '.join(kinds)} per block{units})"
        )
    bad = [v for v in values if v not in (0.0, 1.0)]
    if bad:
        raise ValueError(f"subnet mask values must be 0 or 1, got {bad[:5]}")
    return [int(v) for v in values]


def spread_indices(k: int, n: int) -> List[int]:
    """``k`` indices out of ``range(n)`` spread as evenly as possible, last one kept.

    Example: ``spread_indices(3, 12) == [3, 7, 11]``.
    """
    if not 0 < k <= n:
        raise ValueError(f"cannot keep {k} out of {n}")
    return [round((i + 1) * n / k) - 1 for i in range(k)]


def static_mask(size: int, num_blocks: int, rule: str,
                kinds: Sequence[str] = MODULE_TYPES) -> List[int]:
    """Mask that keeps ``size`` modules by a static rule.

    Args:
        size: number of modules to keep (1..M).
        num_blocks: number of blocks of the supernet.
        rule: ``"layers"`` keeps ``size / K`` whole blocks evenly spread (the last block
            is always kept; ``size`` must be a multiple of the K modules per block),
            ``"modules"`` keeps ``size`` modules evenly spread over the flattened list.
        kinds: the modules of a block (:func:`block_kinds`).
    """
    per_block = len(kinds)
    total = per_block * num_blocks
    if not 0 < size <= total:
        raise ValueError(
            f"subnet size {size} is outside the supernet: it has {total} modules "
            f"({num_blocks} blocks x {per_block}); use a size in 1..{total}"
        )
    if rule == "layers":
        if size % per_block:
            raise ValueError(
                f"subnet_rule 'layers' keeps whole blocks: size {size} must be a multiple "
                f"of {per_block} (the modules of a block: {', '.join(kinds)}), or use "
                "subnet_rule 'modules' or explicit subnet_masks"
            )
        keep = set(spread_indices(size // per_block, num_blocks))
        return [1 if i // per_block in keep else 0 for i in range(total)]
    if rule == "modules":
        keep = set(spread_indices(size, total))
        return [1 if i in keep else 0 for i in range(total)]
    raise ValueError(f"unknown subnet_rule {rule!r}; choose one of {STATIC_RULES}")


def build_subnet_table(
    layout: UnitLayout,
    sizes: Optional[Sequence[int]],
    masks: Optional[Dict[str, Sequence[float]]],
    rule: str,
    names: Optional[Sequence[str]] = None,
) -> Dict[str, List[int]]:
    """Named subnets as unit masks, ordered from the fewest to the most units.

    Args:
        layout: units per module type and number of blocks.
        sizes: module counts; each becomes a subnet named ``str(count)`` by ``rule``.
        masks: explicit module (length M) or unit (length N) masks by name (take
            precedence over ``sizes`` for equal names).
        rule: static rule for ``sizes`` (see :func:`static_mask`).
        names: subnets that start as the full network, for a learned selection to fill
            (e.g. OrthoSoftmax's budgets); kept in the given order.

    Returns:
        ``{name: unit mask}``; with none of ``sizes``, ``masks``, ``names`` a single
        full-size subnet named ``str(M)``.
    """
    table: Dict[str, List[int]] = {}
    for size in sizes or []:
        table[str(int(size))] = layout.expand(layout.static_mask(int(size), rule))
    for name, mask in (masks or {}).items():
        table[str(name)] = layout.as_units(mask)
    for name in names or []:
        table[str(name)] = [1] * layout.num_units
    if not table:
        table[str(layout.num_modules)] = [1] * layout.num_units
    for name, mask in table.items():
        if sum(mask) == 0:
            raise ValueError(f"subnet {name!r} keeps no module")
    return dict(sorted(table.items(), key=lambda kv: sum(kv[1])))
