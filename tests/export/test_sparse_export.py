"""Exporting Omni-sparsity levels: compressed weights (unstructured) or a physically
smaller dense model (structured), both decoded by ``asr_inference``."""

import json

import numpy as np
import pytest
import torch

from espnet_supernet.decode.speech2text import speech2text
from espnet_supernet.deploy.subnet_report import subnet_report
from espnet_supernet.export.model_export import export_sparse_model
from espnet_supernet.export.sparse_storage import compress_state_dict, decompress_state_dict
from tiny_models import make_task_supernet

MODEL_CONF = {"ctc_weight": 0.5, "per_size_ctc": False}


def sparse_supernet(tmp_path, **conf):
    conf = {"levels": [0.0, 0.5, 0.8], "warmup_steps": 0, **conf}
    return make_task_supernet(tmp_path, {"sparsity": "omni", "sparsity_conf": conf,
                                         "model_conf": MODEL_CONF})


def test_storage_round_trip_and_size():
    torch.manual_seed(0)
    w = torch.randn(256, 128) * (torch.rand(256, 128) > 0.75)
    stored = compress_state_dict({"w": w, "b": torch.randn(128)})
    assert set(stored["sparse"]) == {"w"} and set(stored["dense"]) == {"b"}
    assert torch.equal(decompress_state_dict(stored)["w"], w)
    nonzero = int((w != 0).sum())
    assert stored["sparse"]["w"]["values"].numel() == nonzero
    assert stored["sparse"]["w"]["bitmask"].numel() == w.numel() // 8


def test_unstructured_level_exports_compressed_and_decodes(tmp_path):
    model, config, path = sparse_supernet(tmp_path)
    report = subnet_report(model)
    assert list(report) == ["sp80", "sp50", "sp0"]
    assert report["sp80"]["encoder_params"] < report["sp50"]["encoder_params"] < \
        report["sp0"]["encoder_params"]
    assert report["sp80"]["encoder_gflops_per_sec"] == report["sp0"]["encoder_gflops_per_sec"]
    records = {lv: export_sparse_model(model, config, tmp_path / lv, lv) for lv in ("sp80", "sp0")}
    sparse = records["sp80"]
    assert sparse["max_encoder_difference"] < 1e-4 and sparse["encoder"] == "conformer"
    assert sparse["params_kept"] == report["sp80"]["total_params"]
    # compressed: within 10% of density x dense size + the 1-bit mask
    assert sparse["model_bytes"] <= 1.1 * sparse["expected_bytes"]
    pruned = report["sp0"]["total_params"] - report["sp80"]["total_params"]
    saved = records["sp0"]["model_bytes"] - sparse["model_bytes"]
    assert 0.8 * 4 * pruned < saved < 4 * pruned  # 4 bytes per pruned fp32 weight
    s2t = speech2text(None, asr_train_config=tmp_path / "sp80/config.yaml",
                      asr_model_file=tmp_path / "sp80/model.pth", device="cpu",
                      ctc_greedy=True)
    w = s2t.asr_model.encoder.encoders[0].feed_forward.w_1.weight
    assert int((w == 0).sum()) == round(0.8 * w.numel())
    hyps = s2t(np.random.default_rng(0).standard_normal(8000).astype(np.float32))
    assert len(hyps) == 1 and len(hyps[0][1]) > 0  # tokens decoded


def test_structured_level_exports_smaller_dense_model(tmp_path):
    model, config, _ = sparse_supernet(tmp_path, layer_types=["ffn"], structure="ffn_rows")
    record = export_sparse_model(model, config, tmp_path / "out", "sp50")
    assert record["encoder"] == "pruned_conformer" and record["max_encoder_difference"] < 1e-4
    units = model.encoder.encoders[0].feed_forward.w_1.out_features
    assert all(b["ffn"] == b["ffn_macaron"] == units // 2 for b in record["blocks"])
    report = subnet_report(model)
    assert record["params"] == report["sp50"]["total_params"]
    assert report["sp50"]["encoder_gflops_per_sec"] < report["sp0"]["encoder_gflops_per_sec"]
    s2t = speech2text(None, asr_train_config=tmp_path / "out/config.yaml",
                      asr_model_file=tmp_path / "out/model.pth", device="cpu",
                      ctc_greedy=True)
    assert s2t.asr_model.encoder.encoders[1].feed_forward.w_1.out_features == units // 2


def test_unknown_level_lists_valid_ones(tmp_path):
    model, config, _ = sparse_supernet(tmp_path)
    with pytest.raises(ValueError, match="valid names: sp80, sp50, sp0"):
        export_sparse_model(model, config, tmp_path / "x", "sp60")


def test_per_layer_search_result_exports(tmp_path):
    model, config, path = sparse_supernet(tmp_path, layer_types=["ffn"], structure="ffn_rows")
    search = tmp_path / "search.yaml"
    search.write_text("block_sparsity: {0: 0.8, 1: 0.0}\n")
    from espnet_supernet.bin.export import main as export_main

    export_main(["--asr_train_config", str(path), "--asr_model_file",
                 str(tmp_path / "model.pth"), "--subnet", "search", "--outdir",
                 str(tmp_path / "out"), "--sparsity_search", str(search)])
    record = json.loads((tmp_path / "out/export.json").read_text())
    units = model.encoder.encoders[0].feed_forward.w_1.out_features
    assert [b["ffn"] for b in record["blocks"]] == [round(0.2 * units), units]
    assert record["max_encoder_difference"] < 1e-4
    search.write_text("block_sparsity: {0: 0.6}\n")
    with pytest.raises(SystemExit, match="not trained levels"):
        export_main(["--asr_train_config", str(path), "--asr_model_file",
                     str(tmp_path / "model.pth"), "--subnet", "x", "--outdir",
                     str(tmp_path / "x"), "--sparsity_search", str(search)])
