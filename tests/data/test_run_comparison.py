"""An option study side by side from run records (espnet_supernet.data.run_comparison)."""

import json
from pathlib import Path

import pytest

from espnet_supernet.bin.compare_runs import main as compare_main
from espnet_supernet.data.run_comparison import compare_runs, comparison_markdown


def _record(results: Path, name: str, mode: str, epoch_seconds, kept, wers, updates=20,
            decoding="decode_ctc_lm"):
    """results/<name>/{training,scores}.json as stage 13 writes them (2 epochs of 10)."""
    out = results / name
    out.mkdir(parents=True)
    epochs = [dict(epoch=i + 1, updates=(i + 1) * updates // 2, train_seconds=s,
                   valid_seconds=1.0) for i, s in enumerate(epoch_seconds)]
    (out / "training.json").write_text(json.dumps(dict(
        settings=dict(seed=0, max_epoch=2, selection="simple_topk",
                      selection_conf=dict(selection_epochs=1, masked_modules=mode)),
        epochs=epochs, updates=epochs[-1]["updates"],
        subnets={"4": dict(kept=kept, encoder_params=100)})))
    rows = [dict(size="4", test_set=t, wer=w, encoder_params=100, decoding=decoding, lm=True)
            for t, w in wers.items()]
    (out / "scores.json").write_text(json.dumps(dict(rows=rows)))


def test_the_differing_setting_time_per_update_and_kept_modules(tmp_path):
    _record(tmp_path, "asr_skip", "skip", [10.0, 6.0], ["b0.ffn", "b1.conv"],
            {"dev": 40.0, "test": 42.0})
    _record(tmp_path, "asr_compute", "compute", [15.0, 6.0], ["b0.ffn", "b1.mhsa"],
            {"dev": 39.0, "test": 43.5})
    comparison = compare_runs(tmp_path, ["asr_skip", "asr_compute"])
    assert comparison["differs"] == ["selection_conf.masked_modules"]  # seed etc. are equal
    skip, compute = comparison["runs"]
    assert skip["settings"] == {"selection_conf.masked_modules": "skip"}
    # epoch 1 (the selection epoch) is 10 updates; all epochs 20
    assert (skip["selection_seconds_per_update"], skip["seconds_per_update"]) == (1.0, 0.8)
    assert (compute["selection_seconds_per_update"], compute["seconds_per_update"]) == (
        1.5, 1.05)
    assert compute["sizes"]["4"] == {"kept": ["b0.ffn", "b1.mhsa"], "encoder_params": 100,
                                     "wer": {"dev": 39.0, "test": 43.5}}
    assert comparison["kept_in_common"] == {"4": {"asr_skip|asr_compute": 1}}
    md = comparison_markdown(comparison, "masked modules")
    assert "| asr_compute | compute | 1.05 | 1.5 |" in md
    assert "| asr_skip | 100 | 40.0 | 42.0 | b0.ffn, b1.conv |" in md
    assert "Equal budget: 20 updates each, decoded with decode_ctc_lm + LM." in md


def test_unequal_budgets_or_decodings_are_refused(tmp_path, capsys):
    _record(tmp_path, "asr_a", "skip", [1.0, 1.0], ["x"], {"dev": 1.0})
    _record(tmp_path, "asr_b", "compute", [1.0, 1.0], ["x"], {"dev": 1.0}, updates=40)
    _record(tmp_path, "asr_c", "compute", [1.0, 1.0], ["x"], {"dev": 1.0},
            decoding="decode_ctc_greedy")
    with pytest.raises(ValueError, match="different numbers of updates"):
        compare_runs(tmp_path, ["asr_a", "asr_b"])
    with pytest.raises(ValueError, match="decoded differently"):
        compare_runs(tmp_path, ["asr_a", "asr_c"])
    with pytest.raises(ValueError, match="at least two runs"):
        compare_runs(tmp_path, ["asr_a"])
    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as stop:
        compare_main(["--results_dir", str(tmp_path), "--runs", "asr_a", "asr_missing",
                      "--output", str(out)])
    assert "asr_missing/training.json is missing: run stages 11-13" in str(stop.value)
    assert not out.with_suffix(".json").exists()  # nothing written


def test_the_cli_writes_json_and_markdown(tmp_path):
    _record(tmp_path, "asr_a", "skip", [1.0, 1.0], ["x"], {"dev": 1.0})
    _record(tmp_path, "asr_b", "compute", [2.0, 1.0], ["x"], {"dev": 2.0})
    compare_main(["--results_dir", str(tmp_path), "--runs", "asr_a", "asr_b",
                  "--output", str(tmp_path / "out" / "masked")])
    data = json.loads((tmp_path / "out" / "masked.json").read_text())
    assert [r["experiment"] for r in data["runs"]] == ["asr_a", "asr_b"]
    assert (tmp_path / "out" / "masked.md").read_text().startswith("## masked\n")
