"""Learned subnet selection through the recipe (stages 11-13) on the tiny corpus.

Starts from the ``prepared`` fixture (data, BPE, statistics) and trains
the tiny supernet with each learned selection method: one epoch of step 1, then the
sandwich rule on the frozen masks (Simple-Top-k is also decoded and scored, on test_clean
only, to keep the suite short). Iterative-Zero-Out runs on a supernet without macaron FFNs
(``macaron_style: false``, 3 modules per block, sizes 3 and 6) through decoding, scoring
and export. A second Simple-Top-k run is interrupted in step 1 and
resumed across the switch; it must end with the same masks. OrthoSoftmax runs
component-wise (FFN chunks, heads) with params budgets, decoded and scored per budget.
"""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_in
from e2e_run import INF_TAG, QUICK_STAGE12, SIZES, TINY_ARGS

METHODS = ("simple_topk", "iterative_zero_out")
DECODED, DECODED_SET = "simple_topk", "test_clean"
# method -> (extra training arguments, last stage, named sizes, modules per block)
RUNS = {
    "simple_topk": ("", "13", SIZES, 4),
    "iterative_zero_out": ("--encoder_conf macaron_style=false --encoder_conf "
                           "subnet_sizes=[3,6]", "14", ("3", "6"), 3),
}


def selection_args(method: str, max_epoch: int, extra: str = "") -> tuple:
    return ("--asr_tag", f"tiny_{method}", "--asr_args",
            f"--selection {method} --selection_conf selection_epochs=1 --max_epoch {max_epoch}"
            f" {extra}")


# Simple-Top-k trains from a config file (the others from overrides), so that
# local/compare_alone.sh can train its learned size alone (it names runs by config)
TOPK_CONFIG = "conf/tuning/tiny_simple_topk.yaml"


@pytest.fixture(scope="module")
def selected(prepared, run_recipe):
    """{method: exp dir} after 2 epochs (1 of them step 1); simple_topk decoded too,
    iterative_zero_out (no macaron FFNs) decoded and exported."""
    tiny = TINY_ARGS[TINY_ARGS.index("--asr_config") + 1]
    conf = yaml.safe_load((prepared.recipe / tiny).read_text())
    conf.update(selection="simple_topk", selection_conf=dict(selection_epochs=1))
    (prepared.recipe / TOPK_CONFIG).write_text(yaml.safe_dump(conf))
    exps = {}
    for method in METHODS:
        extra, stop, _, _ = RUNS[method]
        args = list(TINY_ARGS)
        if method == "simple_topk":
            args[args.index("--asr_config") + 1] = TOPK_CONFIG
            tag = ("--asr_tag", "tiny_simple_topk", "--asr_args", "--max_epoch 2")
        else:
            tag = selection_args(method, 2, extra)
        run = run_recipe(prepared.recipe, *args, *QUICK_STAGE12, "--stage", "11",
                         "--stop_stage", stop, "--test_sets", DECODED_SET, *tag,
                         log_name=f"run_{method}.log")
        assert run.returncode == 0, run.tail()
        exps[method] = prepared.recipe / "exp" / f"asr_tiny_{method}"
    return exps


def model_masks(model_file: Path) -> torch.Tensor:
    return torch.load(model_file, map_location="cpu")["encoder.subnet_mask_table"]


@pytest.mark.parametrize("method", METHODS)
def test_masks_freeze_with_report_and_decode(selected, method):
    exp = selected[method]
    _, _, sizes, per_block = RUNS[method]
    report = yaml.safe_load((exp / "selection.yaml").read_text())
    assert list(report["sizes"]) == list(sizes)
    assert [report["sizes"][s]["modules"] for s in sizes] == [per_block, 2 * per_block]
    assert len(report["module_order"]) == per_block
    small = report["sizes"][sizes[0]]["mask"]
    assert sum(small) == per_block and len(small) == 2 * per_block
    assert (exp / "selection.png").stat().st_size > 1000
    log = (exp / "train.log").read_text()
    assert "selection frozen" in log and "loss_super" in log and "loss_max" in log
    # the learned masks are in the trained model and used for decoding
    table = model_masks(exp / "valid.loss.best.pth")
    assert table[0].tolist() == small
    scores = torch.load(exp / "valid.loss.best.pth", map_location="cpu")["selection.score"]
    n = 2 * per_block
    init = torch.zeros(n) if method == "simple_topk" else torch.full((n,), 10.0)
    assert (scores - init).abs().max() > 1e-2  # the scores learned


@pytest.mark.parametrize("method", METHODS)
def test_learned_sizes_are_decoded_and_scored(selected, method):
    exp, sizes = selected[method], RUNS[method][2]
    results = (exp / "RESULTS.md").read_text()
    for size in sizes:
        assert (exp / f"{INF_TAG}_size{size}" / DECODED_SET / "text").is_file()
        assert re.search(rf"\| {size} \| {DECODED_SET} \|.*\| \d+\.\d+ \|", results)


def test_a_supernet_without_macaron_exports_every_learned_size(selected):
    """Stage 14 of the no-macaron Iterative-Zero-Out run: a learned size of whole blocks
    is a stock conformer without macaron FFNs, any other a pruned_conformer; both give
    the supernet's output."""
    exp = selected["iterative_zero_out"]
    report = yaml.safe_load((exp / "selection.yaml").read_text())
    for size in RUNS["iterative_zero_out"][2]:
        record = json.loads((exp / "export" / f"size{size}" / "export.json").read_text())
        config = yaml.safe_load((exp / "export" / f"size{size}" / "config.yaml").read_text())
        mask = report["sizes"][size]["mask"]
        whole = all(len(set(mask[b:b + 3])) == 1 for b in (0, 3))
        assert record["encoder"] == ("conformer" if whole else "pruned_conformer"), mask
        assert config["encoder_conf"]["macaron_style"] is False
        assert record["max_encoder_difference"] <= 1e-4
        assert record["onnx_max_difference"] <= 1e-4


def test_decoder_loads_the_learned_mask(selected, prepared, monkeypatch):
    from espnet_supernet.decode.speech2text import speech2text

    monkeypatch.chdir(prepared.recipe)  # config.yaml paths are relative to the recipe
    exp = selected["simple_topk"]
    report = yaml.safe_load((exp / "selection.yaml").read_text())
    s2t = speech2text("4", asr_train_config=str(exp / "config.yaml"),
                      asr_model_file=str(exp / "valid.loss.best.pth"), device="cpu")
    assert s2t.asr_model.encoder.active_mask == report["sizes"]["4"]["mask"]


def test_a_learned_size_alone_trains_its_own_mask(selected, prepared):
    """local/compare_alone.sh --runs alone on the Simple-Top-k config: its size 4 trained
    from scratch on the one job's learned mask, decoded, scored and compared."""
    recipe, onejob = prepared.recipe, selected["simple_topk"]
    args = [a for a in TINY_ARGS if a not in ("--asr_config", TINY_ARGS[1])]
    argv = ["local/compare_alone.sh", "--config", TOPK_CONFIG, "--runs", "alone", "--seeds",
            "0", "--sizes", "4", "--train_args", "--max_epoch 2", *args, *QUICK_STAGE12,
            "--test_sets", DECODED_SET]
    run = run_in(recipe, argv, recipe / "compare_learned.log")
    assert run.returncode == 0, run.tail()
    learned = json.loads((onejob / "subnets.json").read_text())
    alone = recipe / "exp" / "asr_tiny_simple_topk_alone4_seed0"
    config = yaml.safe_load((alone / "config.yaml").read_text())
    assert config["selection"] == "static" and config["model_conf"]["train_only"] == 4
    assert config["config"] == "exp/alone_conf/tiny_simple_topk_seed0.yaml"
    # the one job's learned mask, trained from scratch, decoded and scored
    assert config["encoder_conf"]["subnet_masks"]["4"] == learned["4"]["mask"]
    assert model_masks(alone / "valid.loss.best.pth")[0].tolist() == learned["4"]["mask"]
    assert (alone / f"{INF_TAG}_size4" / DECODED_SET / "text").is_file()
    text = (recipe / "RESULTS.md").read_text()
    section = text.split(f"## One job vs each size alone: {TOPK_CONFIG}, each learned "
                         "subnet alone\n")[1].split("\n## ")[0]
    params = learned["4"]["encoder_params"] / 1e6
    assert f"| 4 ({params:.2f}M, " in section and "its own subnet" in section
    # an alone run without its one job says what to do
    bad = run_in(recipe, ["local/compare_alone.sh", "--config", TOPK_CONFIG, "--seeds", "3",
                          "--runs", "alone", *args], recipe / "bad.log")
    assert bad.returncode == 1
    assert "exp/asr_tiny_simple_topk_seed3/subnets.json is missing" in bad.output


def test_resume_in_step1_and_across_the_switch_gives_the_same_masks(prepared, run_recipe,
                                                                    selected):
    recipe = prepared.recipe
    args = ("--stage", "11", "--stop_stage", "11", "--asr_tag", "tiny_resumed")
    common = "--selection simple_topk --selection_conf selection_epochs=1"
    first = run_recipe(recipe, *TINY_ARGS, *args, "--asr_args", f"{common} --max_epoch 1",
                       log_name="run_resume_1.log")
    assert first.returncode == 0, first.tail()
    exp = recipe / "exp" / "asr_tiny_resumed"
    assert not (exp / "selection.yaml").exists()  # still in step 1
    second = run_recipe(recipe, *TINY_ARGS, *args, "--asr_args", f"{common} --max_epoch 2",
                        log_name="run_resume_2.log")
    assert second.returncode == 0, second.tail()
    assert "2/2epoch started" in (exp / "train.log").read_text()  # resumed, not restarted
    resumed = yaml.safe_load((exp / "selection.yaml").read_text())
    straight = yaml.safe_load((selected["simple_topk"] / "selection.yaml").read_text())
    assert resumed["sizes"] == straight["sizes"]
    assert resumed["scores"] == pytest.approx(straight["scores"], abs=1e-4)


ORTHO_ARGS = (
    "--asr_tag", "tiny_ortho", "--asr_args",
    "--selection ortho_softmax --selection_conf selection_epochs=1 "
    "--selection_conf criterion=params --selection_conf budgets=[0.6,1.0] "
    "--encoder_conf subnet_sizes= --encoder_conf ffn_chunks=4 --encoder_conf prune_heads=true "
    "--encoder_conf subnet_frontend_channels={'0.6':16} --max_epoch 2",
)  # the small budget with half of the conv2d front end's 32 channels


def test_ortho_softmax_component_subnets_train_decode_and_score(prepared, run_recipe):
    run = run_recipe(prepared.recipe, *TINY_ARGS, *QUICK_STAGE12, "--stage", "11",
                     "--stop_stage", "13", "--test_sets", DECODED_SET, *ORTHO_ARGS,
                     log_name="run_ortho.log")
    assert run.returncode == 0, run.tail()
    exp = prepared.recipe / "exp" / "asr_tiny_ortho"
    report = yaml.safe_load((exp / "selection.yaml").read_text())
    assert report["granularity"] == "component" and list(report["sizes"]) == ["0.6", "1.0"]
    small, full = report["sizes"]["0.6"], report["sizes"]["1.0"]
    assert len(small["mask"]) == 2 * (4 + 2 + 1 + 4)  # 2 blocks: chunks, heads, conv, chunks
    assert full["params_fraction"] == 1.0
    assert abs(small["params_fraction"] - 0.6) < 0.1  # its narrow front end counted
    assert small["frontend_channels"] == 16 and "frontend_channels" not in full
    subnets = json.loads((exp / "subnets.json").read_text())
    assert subnets["0.6"]["frontend_channels"] == 16
    assert subnets["0.6"]["encoder_params"] == pytest.approx(
        small["encoder_params"]) and small["encoder_params"] < full["encoder_params"]
    assert small["units"] < full["units"]
    checkpoint = torch.load(exp / "valid.loss.best.pth", map_location="cpu")
    assert checkpoint["selection.score_matrix"].shape == (22, 22)
    assert checkpoint["encoder.subnet_mask_table"][0].tolist() == small["mask"]
    results = (exp / "RESULTS.md").read_text()
    for size in ("0.6", "1.0"):
        assert (exp / f"{INF_TAG}_size{size}" / DECODED_SET / "text").is_file()
        assert re.search(rf"\| {re.escape(size)} \| {DECODED_SET} \|.*\| \d+\.\d+ \|", results)
