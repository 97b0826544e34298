"""Stages 13-14 publish the run's record (results/<exp>/*.json) from the trained tiny run."""

import json

import torch
import yaml
from e2e_run import ASR_EXP, SIZES, TEST_SETS

from espnet_supernet.data.scoring import read_results_md


def test_run_record_matches_what_the_run_wrote(trained):
    record = trained.recipe / "results" / ASR_EXP.split("/")[-1]
    training = json.loads((record / "training.json").read_text())
    scores = json.loads((record / "scores.json").read_text())
    deploy = json.loads((record / "deploy.json").read_text())
    config = yaml.safe_load((trained.exp / "config.yaml").read_text())

    # training budget: every epoch, cumulative updates = the model's own step counter
    assert [e["epoch"] for e in training["epochs"]] == list(range(1, config["max_epoch"] + 1))
    per_epoch = {b["updates"] - a["updates"] for a, b in
                 zip(training["epochs"], training["epochs"][1:])}
    assert len(per_epoch) == 1 and per_epoch.pop() == training["epochs"][0]["updates"] > 0
    model = torch.load(trained.exp / "checkpoint.pth", map_location="cpu",
                       weights_only=False)["model"]
    assert training["updates"] == int(model["sandwich_step"])
    assert 0 < training["train_seconds"] < trained.run.seconds
    assert training["settings"]["model"] == "supernet"
    assert training["settings"]["max_epoch"] == config["max_epoch"]
    assert {f"loss_{s}" for s in SIZES} <= set(training["valid"])

    # scores: the same WER / CER as stage 13's RESULTS.md (another code path), every cell
    cells = read_results_md(str(trained.recipe / "RESULTS.md"))[trained.exp.name].cells
    rows = {(r["size"], r["test_set"]): r for r in scores["rows"]}
    assert set(rows) == {(s, d) for s in SIZES for d in TEST_SETS}
    for key, row in rows.items():
        assert cells[key] == f"{row['wer']:.2f} / {row['cer']:.2f}"
        assert abs(row["wer"] - 100 * (row["sub"] + row["del"] + row["ins"]) / row["words"]) < 1e-3
        assert row["decoding"] == "decode_lm_tiny" and row["lm"] is True

    # deploy: stage 14's rows as deploy_report wrote them
    assert deploy["rows"] == json.loads((trained.exp / "deploy.json").read_text())
    assert deploy["machine"]["cores"] >= 1 and deploy["experiment"] == trained.exp.name
