"""Run records: the JSON files the docs are rendered from (espnet_supernet.data.run_record)."""

import datetime
import json
from pathlib import Path

import pytest
import torch

from espnet_supernet.bin.publish_run import main as publish_main
from espnet_supernet.data.run_record import publish_run, training_record


def _fake_exp(tmp_path: Path) -> Path:
    """An experiment dir with ESPnet's config.yaml and a checkpoint.pth reporter of 2 epochs."""
    exp = tmp_path / "exp" / "asr_x"
    exp.mkdir(parents=True)
    (exp / "config.yaml").write_text("model: supernet\nmax_epoch: 2\nseed: 3\n"
                                     "encoder_conf: {num_blocks: 2, subnet_sizes: [4, 8]}\n")
    stats = {e: {"train": {"time": datetime.timedelta(seconds=60 * e), "total_count": 10 * e,
                           "loss_min": float("nan") if e == 1 else 2.0},
                 "valid": {"time": datetime.timedelta(seconds=5), "total_count": 3,
                           "loss_4": torch.tensor(7.5 - e), "cer_ctc_8": 0.25}}
             for e in (1, 2)}
    torch.save({"reporter": {"stats": stats, "epoch": 2}, "model": {}}, exp / "checkpoint.pth")
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("u1 a b c d\nu2 e f\n")
    hyp.write_text("u1 a x c\nu2 e f\n")
    (exp / "score_summary.jsonl").write_text(json.dumps(dict(
        size="8", test_set="test_clean", ref=str(ref), hyp=str(hyp), encoder_params=10,
        total_params=12, encoder_gflops_per_sec=0.5, decoding="decode_ctc_lm", lm=True)) + "\n")
    return exp


def test_training_record_sums_the_epochs_and_keeps_the_last_validation(tmp_path):
    rec = training_record(_fake_exp(tmp_path))
    assert rec["updates"] == 20 and rec["train_seconds"] == 180.0 and rec["valid_seconds"] == 10.0
    assert [e["updates"] for e in rec["epochs"]] == [10, 20]
    assert rec["valid"] == {"loss_4": 5.5, "cer_ctc_8": 0.25}
    assert rec["settings"]["seed"] == 3 and rec["settings"]["encoder_conf"] == {
        "num_blocks": 2, "subnet_sizes": [4, 8]}
    assert "selection_conf" not in rec["settings"]  # a static config has none


def test_a_learned_selection_records_its_selection_conf(tmp_path):
    exp = _fake_exp(tmp_path)
    config = exp / "config.yaml"
    config.write_text(config.read_text() + "selection: ortho_softmax\n"
                      "selection_conf: {criterion: params, budgets: [0.5, 1.0]}\n")
    settings = training_record(exp)["settings"]
    assert settings["selection"] == "ortho_softmax"
    assert settings["selection_conf"] == {"criterion": "params", "budgets": [0.5, 1.0]}


def test_a_learned_selection_records_the_modules_each_size_kept(tmp_path):
    exp = _fake_exp(tmp_path)
    assert "subnets" not in training_record(exp)  # no subnets.json
    (exp / "subnets.json").write_text(json.dumps({
        "4": {"mask": [1, 0], "kept": ["block0.ffn"], "encoder_params": 7, "total_params": 9},
        "8": {"mask": [1, 1], "kept": ["block0.ffn", "block1.conv"], "encoder_params": 10,
              "total_params": 12}}))
    assert training_record(exp)["subnets"] == {
        "4": {"kept": ["block0.ffn"], "encoder_params": 7},
        "8": {"kept": ["block0.ffn", "block1.conv"], "encoder_params": 10}}


def test_publish_writes_the_records_and_scores_from_the_hypotheses(tmp_path):
    exp = _fake_exp(tmp_path)
    written = publish_run(exp, tmp_path / "results")
    assert sorted(p.name for p in written) == ["scores.json", "training.json"]  # no deploy.json
    row = json.loads((tmp_path / "results" / "asr_x" / "scores.json").read_text())["rows"][0]
    # u1: 1 substitution (b->x) + 1 deletion (d) of 6 reference words
    assert (row["sub"], row["del"], row["ins"], row["words"]) == (1, 1, 0, 6)
    assert row["wer"] == pytest.approx(100 * 2 / 6, abs=1e-4)
    assert row["decoding"] == "decode_ctc_lm" and row["lm"] is True


def test_missing_or_broken_sources_say_which_stage_to_run(tmp_path, capsys):
    exp = _fake_exp(tmp_path)
    with pytest.raises(SystemExit) as stop:
        publish_main(["--exp", str(exp), "--results_dir", str(tmp_path / "r"), "--parts", "deploy"])
    assert "deploy.json is missing: run stage 14" in str(stop.value)
    (exp / "checkpoint.pth").write_bytes((exp / "checkpoint.pth").read_bytes()[:100])
    with pytest.raises(FileNotFoundError, match="checkpoint.pth is unreadable.*re-run stage 11"):
        training_record(exp)
    assert not (tmp_path / "r").exists()  # nothing written
