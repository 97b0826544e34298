"""Kaldi-style data directory tables (``key value`` per line, C-locale sorted)."""

from collections.abc import Iterable, Mapping
from pathlib import Path


def read_table(path: Path) -> dict[str, str]:
    """Reads a two-column Kaldi table (``key value...``); a missing value reads as ``""``.

    Args:
        path: Table file.

    Returns:
        ``{key: value}``.
    """
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split(maxsplit=1)
        if fields:
            table[fields[0]] = fields[1].strip() if len(fields) == 2 else ""
    return table


def c_sorted(keys: Iterable[str]) -> list[str]:
    """Sorts strings in C locale (byte) order."""
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def write_table(path: Path, table: Mapping[str, object]) -> None:
    """Writes a two-column Kaldi table sorted by key in C locale order."""
    path.write_text("".join(f"{key} {table[key]}\n" for key in c_sorted(table)), encoding="utf-8")
