"""Budget selection: the rule on a hand-made table, a tiny experiment end to end, the
per-machine latency cache, and the errors."""

import json
from pathlib import Path

import pytest
import torch

from espnet_supernet.bin.select_subnet import get_parser, select
from espnet_supernet.deploy.budget_selection import budget_value, choose
from espnet_supernet.export.latency import LatencyTable, file_key

from tiny_models import make_task_supernet as make_supernet


def test_choose_on_a_hand_made_table():
    costs = {"8": 1.4e6, "16": 2.4e6, "24": 3.4e6}
    scores = {"8": (80.0, 30.0), "16": (70.0, 25.0), "24": (71.0, 24.0)}
    assert choose(costs, scores, 10e6) == "16"  # lowest WER, not the largest
    assert choose(costs, scores, 3.0e6) == "16"
    assert choose(costs, scores, 2.0e6) == "8"
    assert choose(costs, scores, 1.0e6) is None
    assert choose(costs, {**scores, "24": (70.0, 25.0)}, 10e6) == "24"  # tie: costlier
    assert choose(costs, {}, 3.0e6) == "16"  # unscored: the costliest that fits


def test_budget_values():
    assert budget_value("10M", 3e6) == 10e6
    assert budget_value("1.2G", 1.0) == 1.2e9
    assert budget_value("0.5", 3e6) == 1.5e6  # a fraction of the full model
    with pytest.raises(ValueError, match="fraction"):
        budget_value("ten", 1.0)


def make_exp(tmp_path: Path, wers: dict, **supernet) -> Path:
    """A tiny experiment dir: config, weights and dev hypotheses with chosen error counts
    (``{size: wrong words out of 4}``)."""
    exp = tmp_path / "exp"
    exp.mkdir()
    model, config, path = make_supernet(tmp_path, **supernet)
    if model.selection.learned:  # as at the end of step 1: the budgets' nested masks
        model.encoder.set_subnet_masks(model.selection.masks())
    (exp / "config.yaml").write_text(path.read_text())
    torch.save(model.state_dict(), exp / "valid.loss.ave.pth")
    ref = tmp_path / "ref"
    ref.write_text("u1 A B C D\n")
    with open(exp / "score_summary.jsonl", "w") as f:
        for size, wrong in wers.items():
            hyp = tmp_path / f"hyp{size}"
            hyp.write_text("u1 " + " ".join(["X"] * wrong + list("ABCD")[wrong:]) + "\n")
            f.write(json.dumps(dict(size=size, test_set="dev_clean", ref=str(ref),
                                    hyp=str(hyp))) + "\n")
    return exp


def test_select_exports_the_best_fitting_size(tmp_path):
    exp = make_exp(tmp_path, {"4": 1, "8": 2})  # the smaller size has the lower dev WER
    out = tmp_path / "chosen"
    args = get_parser().parse_args(["--exp", str(exp), "--max_params", "1.0",
                                     "--outdir", str(out), "--onnx", "false"])
    record = select(args)
    assert record["selected"] == "4"
    exported = json.loads((out / "export.json").read_text())
    assert exported["subnet"] == "4" and exported["encoder"] == "conformer"
    assert (out / "asr_4.zip").is_file() and (out / "selection.json").is_file()
    costs = {r["subnet"]: r["cost"] for r in record["candidates"]}
    assert exported["params"] == costs["4"]
    # a budget between the sizes leaves only size 4; below it, nothing fits
    between = str((costs["4"] + costs["8"]) / 2)
    args = get_parser().parse_args(["--exp", str(exp), "--max_params", between,
                                     "--export", "false"])
    assert select(args)["selected"] == "4"
    args = get_parser().parse_args(["--exp", str(exp), "--max_params", "1k",
                                     "--export", "false"])
    with pytest.raises(ValueError, match=r"no subnet fits params <= 1000: the smallest is "
                                         r"size 4 .*4=.*8="):
        select(args)
    with pytest.raises(ValueError, match="exactly one budget"):
        select(get_parser().parse_args(["--exp", str(exp)]))


def test_ortho_softmax_realises_any_budget(tmp_path):
    ortho = dict(selection="ortho_softmax",
                 selection_conf=dict(budgets=[0.6, 1.0], granularity="component"))
    exp = make_exp(tmp_path, {"0.6": 1, "1.0": 0}, config_updates=ortho, subnet_sizes=None,
                   ffn_chunks=2, prune_heads=True)
    args = get_parser().parse_args(["--exp", str(exp), "--max_params", "1.0",
                                     "--export", "false"])
    costs = {r["subnet"]: r["cost"] for r in select(args)["candidates"]}
    budget = (costs["0.6"] + costs["1.0"]) / 2  # between the trained budgets
    out = tmp_path / "between"
    args = get_parser().parse_args(["--exp", str(exp), "--max_params", str(int(budget)),
                                    "--outdir", str(out), "--onnx", "false"])
    record = select(args)
    exported = json.loads((out / "export.json").read_text())
    assert record["selected"] == f"params{int(budget)}"
    assert costs["0.6"] < exported["params"] <= budget  # more than the trained 0.6 subnet
    assert exported["encoder"] == "pruned_conformer"


def test_latency_table_measures_once_per_machine(tmp_path):
    model, _, _ = make_supernet(tmp_path)
    calls = []

    def factory():
        calls.append(1)
        return model

    table = LatencyTable(tmp_path / "cache", threads=1, seconds=0.5)
    key = file_key(None, "size 8")
    first = table.get(key, factory, repeats=2)
    assert first > 0 and table.get(key, factory) == first and len(calls) == 1
    again = LatencyTable(tmp_path / "cache", threads=1, seconds=0.5)  # read from the file
    assert again.get(key, factory) == first and len(calls) == 1
    assert again.path.name.startswith("latency_") and again.path.name.endswith("-t1.json")
    assert LatencyTable(tmp_path / "cache", threads=2).path != again.path
