"""TODM through the recipe (stages 11-14) on the tiny corpus: an MH-SSM RNN-T supernet
trained with the sandwich rule, alpha-divergence KD, adaptive dropout and ScaledAdam +
Eden, every size decoded with transducer beam search and scored, then exported as a
standalone smaller model.

Starts from the ``prepared`` fixture (data, BPE, statistics).
"""

import json
import re

from e2e_run import QUICK_STAGE12, TINY_ARGS

SIZES = ("d1w0.5", "full")
TODM_ARGS = ("--asr_config", "conf/tuning/train_todm_mhssm_tiny.yaml",
             "--inference_config", "conf/tuning/decode_transducer_tiny.yaml",
             "--use_lm", "false", "--test_sets", "test_clean")


def test_todm_stages_11_to_14(prepared, run_recipe):
    args = [*TINY_ARGS, *QUICK_STAGE12]
    args[args.index("--asr_config") + 1] = TODM_ARGS[1]
    args[args.index("--inference_config") + 1] = TODM_ARGS[3]
    run = run_recipe(prepared.recipe, *args, *TODM_ARGS[4:], "--stage", "11",
                     "--stop_stage", "14", log_name="run_todm.log")
    assert run.returncode == 0, run.tail()
    exp = prepared.recipe / "exp/asr_train_todm_mhssm_tiny"
    log = (exp / "train.log").read_text()
    assert re.search(r"1epoch results: \[train\].*loss_max=[\d.]+.*kd_min=[\d.]+", log), log[-3000:]
    assert re.search(r"\[valid\].*loss_d1w0\.5=[\d.]+.*cer_transducer_full=", log)
    assert "ScaledAdam" in log and "Eden" in log
    report = json.loads((exp / "subnets.json").read_text())
    assert list(report) == list(SIZES)
    assert report["d1w0.5"]["encoder_params"] < report["full"]["encoder_params"]
    results = (exp / "RESULTS.md").read_text()
    for size in SIZES:
        assert re.search(rf"\| {re.escape(size)} \| test_clean \| .* \| \d+\.\d+ \|", results), results
        hyp = exp / f"decode_transducer_tiny_size{size}/test_clean/text"
        assert hyp.is_file() and hyp.read_text().strip()
        export = json.loads((exp / f"export/size{size}/export.json").read_text())
        assert export["encoder_params"] == report[size]["encoder_params"]
        assert export["max_encoder_difference"] < 1e-4
        assert (exp / f"export/size{size}/model_int8.pth").is_file()
    # stage 14's streaming report: every size streamed in 160 ms waveform chunks
    streaming = json.loads((prepared.recipe / "results/asr_train_todm_mhssm_tiny"
                            / "streaming.json").read_text())
    assert streaming["chunk_ms"] == 160 and streaming["threads"] == 1
    assert [(r["size"], r["test_set"]) for r in streaming["rows"]] == [
        (s, "test_clean") for s in SIZES]
    for row in streaming["rows"]:
        assert row["utterances"] == 10 and row["rtf"] > 0 and 0 <= row["wer"]
