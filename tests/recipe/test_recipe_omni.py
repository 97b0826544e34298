"""Omni-sparsity through the recipe (stages 11-14) on the tiny corpus: one supernet
trained for three structured sparsity levels, the sparsest and the dense one decoded,
scored, exported as physically smaller dense models and measured.

Starts from the ``prepared`` fixture (data, BPE, statistics).
"""

import json
import re

from e2e_run import QUICK_STAGE12, TINY_ARGS

LEVELS = ("sp80", "sp50", "sp0")


def test_omni_sparsity_stages_11_to_14(prepared, run_recipe):
    args = [*TINY_ARGS, *QUICK_STAGE12]
    args[args.index("--asr_config") + 1] = "conf/tuning/train_supernet_conformer_tiny_omni.yaml"
    args[args.index("--inference_config") + 1] = "conf/decode_ctc_greedy.yaml"
    run = run_recipe(prepared.recipe, *args, "--use_lm", "false", "--test_sets", "test_clean",
                     "--subnets", "sp80 sp0", "--stage", "11", "--stop_stage", "14",
                     log_name="run_omni.log")
    assert run.returncode == 0, run.tail()
    exp = prepared.recipe / "exp/asr_train_supernet_conformer_tiny_omni"
    log = (exp / "train.log").read_text()
    assert re.search(r"1epoch results: \[train\].*loss_max=[\d.]+.*loss_min=[\d.]+", log)
    assert re.search(r"\[valid\].*loss_sp80=[\d.]+.*loss_sp0=", log), log[-3000:]
    report = json.loads((exp / "subnets.json").read_text())
    assert list(report) == list(LEVELS)
    params = [report[lv]["encoder_params"] for lv in LEVELS]
    assert params[0] < params[1] < params[2]
    results = (exp / "RESULTS.md").read_text()
    for level in ("sp80", "sp0"):  # decoded and exported (--subnets)
        assert re.search(rf"\| {level} \| test_clean \| .* \| \d+\.\d+ \|", results), results
        record = json.loads((exp / f"export/size{level}/export.json").read_text())
        assert record["encoder"] == "pruned_conformer" and record["max_encoder_difference"] < 1e-4
    deploy = {r["size"]: r for r in json.loads((exp / "deploy.json").read_text())}
    assert deploy["sp80"]["model_bytes"] < deploy["sp0"]["model_bytes"]
    assert deploy["sp80"]["greedy"]["test_clean"]["identical_to_supernet"]
