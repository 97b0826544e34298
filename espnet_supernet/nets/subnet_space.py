"""Named subnets of a block-structured supernet: masks over prunable modules and units.

A Conformer supernet with ``num_blocks`` blocks has ``M = 4 * num_blocks`` prunable
modules, ordered block by block as (macaron FFN, MHSA, conv, FFN). A subnet is a 0/1 mask
of length M; a named size (e.g. ``"16"``) maps to one mask. This module builds and checks
those masks; learned selection methods fill them later through the same table.

With component-wise elasticity (OrthoSoftmax, Xu et al. 2025) a module is split into units
(FFN hidden chunks, attention heads; the conv module is one unit), and a subnet is a 0/1
mask over all N units, block by block and module by module (:class:`UnitLayout`). Without
it every module is one unit and N = M.
"""

from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

MODULE_TYPES = ("ffn_macaron", "mhsa", "conv", "ffn")
STATIC_RULES = ("layers", "modules")


def num_modules(num_blocks: int) -> int:
    """Number of prunable modules of a supernet with ``num_blocks`` blocks."""
    return len(MODULE_TYPES) * num_blocks


class UnitLayout(NamedTuple):
    """How many units each module type of a block has, and the number of blocks.

    Attributes:
        per_module: units of (macaron FFN, MHSA, conv, FFN), e.g. (4, 6, 1, 4).
        num_blocks: blocks of the supernet.
    """

    per_module: Tuple[int, int, int, int]
    num_blocks: int

    @property
    def num_modules(self) -> int:
        return num_modules(self.num_blocks)

    @property
    def num_units(self) -> int:
        return sum(self.per_module) * self.num_blocks

    def module_span(self, module: int) -> Tuple[int, int]:
        """[start, stop) of module ``module``'s units in a unit mask."""
        per_block = sum(self.per_module)
        block, kind = divmod(module, len(MODULE_TYPES))
        start = block * per_block + sum(self.per_module[:kind])
        return start, start + self.per_module[kind]

    def expand(self, module_mask: Sequence[int]) -> List[int]:
        """Unit mask keeping every unit of the kept modules."""
        return [int(module_mask[m]) for m in range(self.num_modules)
                for _ in range(self.per_module[m % len(MODULE_TYPES)])]

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
        for m in range(self.num_modules):
            block, kind = divmod(m, len(MODULE_TYPES))
            base = f"block{block}.{MODULE_TYPES[kind]}"
            units = self.per_module[kind]
            label = "head" if MODULE_TYPES[kind] == "mhsa" else "chunk"
            names += [base] if units == 1 else [f"{base}.{label}{u}" for u in range(units)]
        return names


def check_mask(
    mask: Sequence[float], total: int, layout: Optional[UnitLayout] = None
) -> List[int]:
    """Validate a 0/1 mask and return it as a list of ints.

    Raises:
        ValueError: if the length is not ``total`` or a value is not 0 or 1.
    """
    values = [float(v) for v in mask]
    if len(values) != total:
        units = ""
        if layout is not None and layout.num_units != layout.num_modules:
            units = (f", or {layout.num_units} units ({dict(zip(MODULE_TYPES, layout.per_module))}"
                     " per block)")
        raise ValueError(
            f"subnet mask has {len(values)} entries, expected {total} "
            f"(4 modules x {total // 4} blocks: macaron FFN, MHSA, conv, FFN per block{units})"
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


def static_mask(size: int, num_blocks: int, rule: str) -> List[int]:
    """Mask that keeps ``size`` modules by a static rule.

    Args:
        size: number of modules to keep (1..M).
        num_blocks: number of blocks of the supernet.
        rule: ``"layers"`` keeps ``size / 4`` whole blocks evenly spread (the last block
            is always kept; ``size`` must be a multiple of 4), ``"modules"`` keeps
            ``size`` modules evenly spread over the flattened module list.
    """
    total = num_modules(num_blocks)
    if not 0 < size <= total:
        raise ValueError(
            f"subnet size {size} is outside the supernet: it has {total} modules "
            f"({num_blocks} blocks x 4); use a size in 1..{total}"
        )
    if rule == "layers":
        if size % len(MODULE_TYPES):
            raise ValueError(
                f"subnet_rule 'layers' keeps whole blocks: size {size} must be a "
                f"multiple of 4 (or use subnet_rule 'modules' or explicit subnet_masks)"
            )
        keep = set(spread_indices(size // len(MODULE_TYPES), num_blocks))
        return [1 if i // len(MODULE_TYPES) in keep else 0 for i in range(total)]
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
        table[str(int(size))] = layout.expand(static_mask(int(size), layout.num_blocks, rule))
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
