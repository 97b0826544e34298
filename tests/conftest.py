"""Shared fixtures, and how ``pytest -n N`` (tools/test.sh) shares out the suite."""

from pathlib import Path

import pytest
import torch

# Under ``pytest -n N`` (tools/test.sh) a test file is one unit of work, handed whole to a
# worker (its module fixtures are built once), and the tests that use the trained tiny
# recipe share a unit (the session's ``trained`` fixture is built once). Units go out in
# this order, the long recipe runs first, so that no worker is left with one at the end.
SHARED_UNITS = {"test_recipe_e2e": "trained", "test_torchrun_ddp": "trained",
                "test_recipe_run_record": "trained", "test_recipe_quiet": "trained"}
LONG_UNITS = ("trained", "test_recipe_resume", "test_recipe_selection", "test_recipe_omni",
              "test_recipe_todm", "test_recipe_compare_alone", "test_recipe_tedlium",
              "test_recipe_supernetize",
              "test_recipe_slurm")


def _unit(nodeid: str) -> str:
    stem = Path(nodeid.split("::", 1)[0]).stem
    return SHARED_UNITS.get(stem, stem)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Schedules whole units (xdist's ``loadfile`` with the shared units merged)."""
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    return UnitScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    if not hasattr(config, "workerinput"):  # not an xdist worker: pytest's own order
        return

    def rank(item: pytest.Item) -> int:
        unit = _unit(item.nodeid)
        return LONG_UNITS.index(unit) if unit in LONG_UNITS else len(LONG_UNITS)

    items.sort(key=rank)  # stable: pytest's order within a rank


@pytest.fixture
def feats():
    """A padded batch of 2 feature sequences (B, L, 20) and lengths (B,)."""
    torch.manual_seed(0)
    return torch.randn(2, 60, 20), torch.tensor([60, 45])
