"""Named subnets of a block-structured supernet: masks over prunable modules.

A Conformer supernet with ``num_blocks`` blocks has ``M = 4 * num_blocks`` prunable
modules, ordered block by block as (macaron FFN, MHSA, conv, FFN). A subnet is a 0/1 mask
of length M; a named size (e.g. ``"16"``) maps to one mask. This module builds and checks
those masks; learned selection methods fill them later through the same table.
"""

from typing import Dict, List, Optional, Sequence

MODULE_TYPES = ("ffn_macaron", "mhsa", "conv", "ffn")
STATIC_RULES = ("layers", "modules")


def num_modules(num_blocks: int) -> int:
    """Number of prunable modules of a supernet with ``num_blocks`` blocks."""
    return len(MODULE_TYPES) * num_blocks


def check_mask(mask: Sequence[float], total: int) -> List[int]:
    """Validate a 0/1 module mask and return it as a list of ints.

    Raises:
        ValueError: if the length is not ``total`` or a value is not 0 or 1.
    """
    values = [float(v) for v in mask]
    if len(values) != total:
        raise ValueError(
            f"subnet mask has {len(values)} entries, expected {total} "
            f"(4 modules x {total // 4} blocks: macaron FFN, MHSA, conv, FFN per block)"
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
    num_blocks: int,
    sizes: Optional[Sequence[int]],
    masks: Optional[Dict[str, Sequence[float]]],
    rule: str,
) -> Dict[str, List[int]]:
    """Named subnets, ordered from the fewest to the most modules.

    Args:
        num_blocks: blocks of the supernet.
        sizes: module counts; each becomes a subnet named ``str(count)`` by ``rule``.
        masks: explicit masks by name (take precedence over ``sizes`` for equal names).
        rule: static rule for ``sizes`` (see :func:`static_mask`).

    Returns:
        ``{name: mask}``; with neither ``sizes`` nor ``masks`` a single full-size
        subnet named ``str(M)``.
    """
    total = num_modules(num_blocks)
    table: Dict[str, List[int]] = {}
    for size in sizes or []:
        table[str(int(size))] = static_mask(int(size), num_blocks, rule)
    for name, mask in (masks or {}).items():
        table[str(name)] = check_mask(mask, total)
    if not table:
        table[str(total)] = [1] * total
    for name, mask in table.items():
        if sum(mask) == 0:
            raise ValueError(f"subnet {name!r} keeps no module")
    return dict(sorted(table.items(), key=lambda kv: (sum(kv[1]), kv[0])))
