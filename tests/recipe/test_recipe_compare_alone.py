"""local/compare_alone.sh on the tiny corpus: the one job and a size alone, two seeds,
each through stages 11-13, and the comparison section that stage 13 writes. (A learned
size trained alone on its own mask: test_recipe_selection.py, on its Simple-Top-k run.)"""

import json
import shutil

import pytest
import yaml
from e2e_run import QUICK_STAGE12, TINY_ARGS

from espnet_supernet.data.alone_comparison import comparisons
from espnet_supernet.data.scoring import read_results_md
from conftest import run_in

CONFIG = "conf/tuning/train_supernet_conformer_tiny.yaml"
TAG = "train_supernet_conformer_tiny"
ARGS = [a for a in TINY_ARGS if a not in ("--asr_config", CONFIG)] + list(QUICK_STAGE12)


@pytest.fixture(scope="module")
def compared(prepared, tmp_path_factory):
    """A copy of the prepared recipe after compare_alone.sh --seeds "1 2" --sizes 4 (one
    epoch each)."""
    root = tmp_path_factory.mktemp("compare_alone") / "repo"
    shutil.copytree(prepared.recipe.parents[2], root, symlinks=True)
    recipe = root / prepared.recipe.relative_to(prepared.recipe.parents[2])
    argv = ["local/compare_alone.sh", "--config", CONFIG, "--seeds", "1 2", "--sizes", "4",
            "--train_args", "--max_epoch 1", *ARGS, "--test_sets", "test_clean"]
    run = run_in(recipe, argv, recipe / "compare.log")
    assert run.returncode == 0, run.tail()
    return recipe, run


def test_alone_runs_train_only_their_size(compared):
    recipe, _ = compared
    for seed in (1, 2):
        exp = recipe / "exp" / f"asr_{TAG}_alone4_seed{seed}"
        config = yaml.safe_load((exp / "config.yaml").read_text())
        assert config["model_conf"]["train_only"] == 4 and config["seed"] == seed
        assert list(json.loads((exp / "subnets.json").read_text())) == ["4"]
        assert (exp / "decode_lm_tiny_size4" / "test_clean" / "text").is_file()
        assert not (exp / "decode_lm_tiny_size8").exists()
        log = (exp / "train.log").read_text()
        assert "loss_4=" in log and "loss_8=" not in log and "loss_min" not in log
        onejob = recipe / "exp" / f"asr_{TAG}_seed{seed}"
        assert yaml.safe_load((onejob / "config.yaml").read_text())["seed"] == seed
        assert "train_only" not in yaml.safe_load((onejob / "config.yaml").read_text())["model_conf"]


def test_stage13_writes_the_comparison_from_the_records(compared):
    recipe, run = compared
    comp = {c.title: c for c in comparisons(recipe / "results")}[CONFIG]
    assert comp.title == CONFIG and sorted(comp.onejob) == [1, 2]
    assert sorted(comp.alone) == ["4"] and sorted(comp.alone["4"]) == [1, 2]
    scores = {seed: {r["size"]: r["wer"] for r in json.loads(
        (recipe / "results" / f"asr_{TAG}_alone4_seed{seed}" / "scores.json").read_text())["rows"]}
        for seed in (1, 2)}
    onejob = {seed: {r["size"]: r["wer"] for r in json.loads(
        (recipe / "results" / f"asr_{TAG}_seed{seed}" / "scores.json").read_text())["rows"]}
        for seed in (1, 2)}
    text = (recipe / "RESULTS.md").read_text()
    section = text.split(f"## One job vs each size alone: {CONFIG}\n")[1].split("\n## ")[0]
    alone = [scores[1]["4"], scores[2]["4"]]
    one = [onejob[1]["4"], onejob[2]["4"]]
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    assert (f"| 4 | test_clean | {mean(one):.1f} [{min(one):.1f}, {max(one):.1f}] "
            f"| {mean(alone):.1f} [{min(alone):.1f}, {max(alone):.1f}] |") in section
    assert "| 8 |" not in section  # size 8 was not trained alone
    # the experiments' own sections are still there, the comparison is not one of them
    assert f"asr_{TAG}_alone4_seed1" in read_results_md(str(recipe / "RESULTS.md"))
    # a second call skips what is scored
    again = run_in(recipe, ["local/compare_alone.sh", "--config", CONFIG, "--seeds", "1 2",
                            "--sizes", "4", *ARGS], recipe / "again.log")
    assert again.returncode == 0 and again.output.count("already scored; skipped") == 4
