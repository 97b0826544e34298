"""Export of TODM sizes: a smaller standalone MH-SSM transducer with exactly the size's
weights, the same encoder output, and streaming."""

import json

import pytest
import torch
import yaml

from espnet_supernet.export.model_export import export_model
from espnet_supernet.export.supernet_loading import load_supernet
from espnet_supernet.tasks.asr import SupernetASRTask

from tiny_models import make_transducer


def save_supernet(tmp_path):
    args, model = make_transducer(tmp_path)
    config = vars(args)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    return path


@pytest.mark.parametrize("size", ["small", "mid"])
def test_size_exports_as_a_smaller_model_with_the_same_encoder_output(tmp_path, size):
    path = save_supernet(tmp_path)
    supernet, config = load_supernet(path, tmp_path / "model.pth")
    spec = supernet.encoder.subnets[size]
    record = export_model(supernet, config, tmp_path / size, size, pack_zip=True,
                          quantize="int8")
    assert record["max_encoder_difference"] < 1e-5 and "onnx" not in record
    # exactly the weights the size computes with, nothing else
    assert record["encoder_params"] == supernet.encoder.subnet_params(spec)
    full = sum(p.numel() for p in supernet.encoder.parameters())
    assert record["encoder_params"] < full
    exported_config = yaml.safe_load((tmp_path / size / "config.yaml").read_text())
    conf = exported_config["encoder_conf"]
    ffn, head_dim = supernet.encoder.widths(spec)
    assert (conf["num_blocks"], conf["linear_units"], conf["ssm_head_dim"]) == (
        spec["depth"], ffn, head_dim)
    assert "subnets" not in conf and "train_only" not in exported_config["model_conf"]
    exported, _ = SupernetASRTask.build_model_from_file(
        tmp_path / size / "config.yaml", tmp_path / size / "model.pth", "cpu")
    assert exported.subnet_names == ["full"] and len(exported.encoder.encoders) == spec["depth"]
    assert json.loads((tmp_path / size / "export.json").read_text())["subnet"] == size
    assert (tmp_path / size / f"asr_{size}.zip").is_file()
    assert (tmp_path / size / "model_int8.pth").is_file()

    # the exported size streams chunk by chunk like the whole utterance
    exported.eval()
    feats = torch.randn(1, 120, 20)
    with torch.no_grad():
        whole, _, _ = exported.encoder(feats, torch.tensor([120]))
        outs, state = [], None
        for start in range(0, 120, 16):
            out, state = exported.encoder.forward_streaming(feats[:, start:start + 16], state)
            outs.append(out)
    streamed = torch.cat(outs, dim=1)
    torch.testing.assert_close(streamed, whole[:, : streamed.size(1)], atol=1e-4, rtol=1e-4)


def test_unknown_size_lists_the_valid_ones(tmp_path):
    path = save_supernet(tmp_path)
    supernet, config = load_supernet(path, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="valid names: small, mid, full"):
        export_model(supernet, config, tmp_path / "x", "tiny", pack_zip=False)
