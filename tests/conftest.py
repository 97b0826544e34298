"""Shared fixtures, and how ``pytest -n N`` (tools/test.sh) shares out the suite."""

import pytest
import torch

# With pytest-xdist's ``--dist loadgroup``, a test file is one unit of work (its module
# fixtures are built once); the tests that use the trained tiny recipe share a unit (the
# session's ``trained`` fixture is built once). Units are handed out in this order, the
# long recipe runs first, so that no worker is left with one of them at the end.
SHARED_UNITS = {"test_recipe_e2e": "trained", "test_torchrun_ddp": "trained"}
LONG_UNITS = ("trained", "test_recipe_selection", "test_recipe_omni", "test_recipe_todm",
              "test_recipe_slurm")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: pytest's own order
        return
    for item in items:
        item.add_marker(pytest.mark.xdist_group(SHARED_UNITS.get(item.path.stem,
                                                                 item.path.stem)))

    def rank(item) -> int:
        unit = SHARED_UNITS.get(item.path.stem, item.path.stem)
        return LONG_UNITS.index(unit) if unit in LONG_UNITS else len(LONG_UNITS)

    items.sort(key=rank)  # stable: pytest's order within a rank


@pytest.fixture
def feats():
    """A padded batch of 2 feature sequences (B, L, 20) and lengths (B,)."""
    torch.manual_seed(0)
    return torch.randn(2, 60, 20), torch.tensor([60, 45])
