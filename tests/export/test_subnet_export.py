"""Exporting subnets: stock conformer for whole blocks, pruned encoder otherwise."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from espnet_supernet.bin.export import main as export_main
from espnet_supernet.deploy.subnet_report import subnet_report
from espnet_supernet.export.export_files import pack, write_export
from espnet_supernet.export.model_export import max_encoder_difference
from espnet_supernet.export.supernet_loading import build_from_config, load_supernet
from espnet_supernet.export.subnet_export import export_subnet
from espnet_supernet.nets.pruned_conformer_encoder import PrunedConformerEncoder
from tiny_models import COMPONENT_MASK, make_task_supernet as make_supernet


def test_whole_blocks_export_as_stock_conformer(tmp_path):
    model, config, _ = make_supernet(tmp_path)
    report = subnet_report(model)
    export = export_subnet(model, config, "4", build_from_config)
    assert export.encoder == "conformer" and export.kept_blocks == [1]  # "layers" rule
    assert export.config["encoder_conf"]["num_blocks"] == 1
    assert "subnet_sizes" not in export.config["encoder_conf"]
    assert export.config["model"] == "espnet" and "selection" not in export.config
    assert export.num_params == report["4"]["total_params"]
    assert not any(k.startswith("encoder.encoders.1.") for k in export.state_dict)
    assert torch.equal(export.state_dict["encoder.encoders.0.feed_forward.w_1.weight"],
                       model.encoder.encoders[1].feed_forward.w_1.weight)  # renumbered
    norm = model.encoder.encoders[1].conv_module.norm
    slot = model.encoder.subnet_names.index("4")
    assert torch.equal(export.state_dict["encoder.encoders.0.conv_module.norm.running_mean"],
                       norm.slot_running_mean[slot])
    assert torch.equal(export.state_dict["ctc.ctc_lo.weight"],
                       model.ctc.ctc_lo.heads[slot].weight)
    exported = build_from_config(export.config)
    exported.load_state_dict(export.state_dict, strict=True)
    assert type(exported.encoder).__name__ == "ConformerEncoder"
    model.set_subnet("4")
    assert max_encoder_difference(model, exported, seconds=2.0) <= 1e-5


def test_whole_blocks_export_as_pruned_conformer_on_request(tmp_path):
    model, config, path = make_supernet(tmp_path)
    export = export_subnet(model, config, "4", build_from_config, stock_encoder=False)
    full = {"ffn_macaron": 64, "mhsa": 2, "conv": 1, "ffn": 64}
    assert export.encoder == "pruned_conformer" and export.kept_blocks == [1]
    assert export.blocks == [full]
    assert export.num_params == subnet_report(model)["4"]["total_params"]
    exported = build_from_config(export.config)
    assert isinstance(exported.encoder, PrunedConformerEncoder)
    exported.load_state_dict(export.state_dict, strict=True)
    model.set_subnet("4")
    assert max_encoder_difference(model, exported, seconds=2.0) <= 1e-5
    # the command line passes the choice on
    export_main(["--asr_train_config", str(path), "--asr_model_file",
                 str(tmp_path / "model.pth"), "--subnet", "4", "--outdir",
                 str(tmp_path / "out"), "--stock_encoder", "false", "--pack", "false",
                 "--onnx", "false"])
    record = json.loads((tmp_path / "out/export.json").read_text())
    assert record["encoder"] == "pruned_conformer" and record["blocks"] == [full]
    assert record["max_encoder_difference"] <= 1e-5


def test_vgg_front_end_exports_as_pruned_conformer_with_its_weights(tmp_path):
    """Stock ESPnet has no VGG front end: whole blocks export as pruned_conformer, the
    front end's weights copied, the output the supernet subnet's."""
    model, config, _ = make_supernet(tmp_path, input_layer="vgg4", vgg_channels=[2, 4, 4, 2])
    export = export_subnet(model, config, "4", build_from_config)
    assert export.encoder == "pruned_conformer"
    assert export.config["encoder_conf"]["input_layer"] == "vgg4"
    assert export.config["encoder_conf"]["vgg_channels"] == [2, 4, 4, 2]
    assert torch.equal(export.state_dict["encoder.embed.convs.3.weight"],
                       model.encoder.embed.convs[3].weight)
    exported = build_from_config(export.config)
    exported.load_state_dict(export.state_dict, strict=True)
    assert export.num_params == subnet_report(model)["4"]["total_params"]
    model.set_subnet("4")
    assert max_encoder_difference(model, exported, seconds=2.0) <= 1e-5


def test_narrow_front_end_exports_physically_narrow(tmp_path):
    """A size with subnet_frontend_channels exports as pruned_conformer with a stock conv2d
    front end of that many channels: its parameters are the report's, its output the
    supernet subnet's; the full size stays a stock conformer."""
    model, config, path = make_supernet(tmp_path, subnet_frontend_channels={"4": 12})
    report = subnet_report(model)
    assert report["4"]["frontend_channels"] == 12 and "frontend_channels" not in report["8"]
    export = export_subnet(model, config, "4", build_from_config)
    assert export.encoder == "pruned_conformer"
    assert export.config["encoder_conf"]["frontend_channels"] == 12
    assert "subnet_frontend_channels" not in export.config["encoder_conf"]
    assert export.state_dict["encoder.embed.conv.2.weight"].shape == (12, 12, 3, 3)
    assert export.state_dict["encoder.embed.out.0.weight"].shape[1] == 12 * 9
    exported = build_from_config(export.config)
    exported.load_state_dict(export.state_dict, strict=True)
    assert export.num_params == report["4"]["total_params"] < report["8"]["total_params"]
    model.set_subnet("4")
    assert max_encoder_difference(model, exported, seconds=2.0) <= 1e-5
    assert export_subnet(model, config, "8", build_from_config).encoder == "conformer"
    # the command line writes it with its ONNX graph
    export_main(["--asr_train_config", str(path), "--asr_model_file",
                 str(tmp_path / "model.pth"), "--subnet", "4", "--outdir",
                 str(tmp_path / "out"), "--pack", "false"])
    record = json.loads((tmp_path / "out/export.json").read_text())
    assert record["encoder"] == "pruned_conformer" and record["max_encoder_difference"] <= 1e-5
    assert record["onnx_bytes"] > 0 and record["onnx_max_difference"] <= 1e-4


def test_component_subnet_exports_pruned(tmp_path):
    model, config, _ = make_supernet(tmp_path, ffn_chunks=4, prune_heads=True,
                                     subnet_masks={"comp": COMPONENT_MASK})
    report = subnet_report(model)
    export = export_subnet(model, config, "comp", build_from_config)
    assert export.encoder == "pruned_conformer"
    assert export.blocks == [{"ffn_macaron": 32, "mhsa": 1, "conv": 1, "ffn": 64},
                             {"ffn_macaron": 0, "mhsa": 2, "conv": 0, "ffn": 16}]
    assert export.num_params == report["comp"]["total_params"]
    exported = build_from_config(export.config)
    assert isinstance(exported.encoder, PrunedConformerEncoder)
    exported.load_state_dict(export.state_dict, strict=True)
    layer0, layer1 = exported.encoder.encoders
    assert layer0.feed_forward_macaron.w_1.weight.shape == (32, 32)
    assert layer0.self_attn.linear_q.weight.shape == (16, 32)
    assert not hasattr(layer1, "conv_module") and not hasattr(layer1, "feed_forward_macaron")
    model.set_subnet("comp")
    assert max_encoder_difference(model, exported, seconds=2.0) <= 1e-5
    # a strict load notices missing and unexpected keys
    state = dict(export.state_dict)
    state["encoder.encoders.1.conv_module.pointwise_conv1.weight"] = torch.zeros(64, 32, 1)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        exported.load_state_dict(state, strict=True)
    del state["encoder.encoders.1.conv_module.pointwise_conv1.weight"]
    del state["encoder.encoders.0.self_attn.pos_bias_u"]
    with pytest.raises(RuntimeError, match="Missing key"):
        exported.load_state_dict(state, strict=True)


STOCK_DECODE = """
import sys, torch
from espnet2.bin.asr_inference import Speech2Text
from espnet2.main_funcs.pack_funcs import unpack
speech = torch.load(sys.argv[3])
for kwargs in (dict(asr_train_config=sys.argv[1], asr_model_file=sys.argv[2]),
               unpack(sys.argv[4], sys.argv[5])):  # the pack zip, unpacked
    s2t = Speech2Text(**kwargs, ctc_weight=1.0, beam_size=1)
    enc, _ = s2t.asr_model.encode(speech, torch.tensor([speech.size(1)]))
    print(s2t.asr_model.ctc.argmax(enc)[0].tolist())
print(type(s2t.asr_model.encoder).__module__)
assert not any(m.startswith("espnet_supernet") for m in sys.modules), "package imported"
"""


def test_exported_loads_in_stock_espnet_without_this_package(tmp_path):
    model, config, _ = make_supernet(tmp_path)
    export = export_subnet(model, config, "4", build_from_config)
    write_export(export, tmp_path / "export")
    zip_path = pack(tmp_path / "export", "4")
    speech = torch.randn(1, 24000, generator=torch.Generator().manual_seed(1))
    torch.save(speech, tmp_path / "speech.pt")
    out = subprocess.run(
        [sys.executable, "-c", STOCK_DECODE, str(tmp_path / "export/config.yaml"),
         str(tmp_path / "export/model.pth"), str(tmp_path / "speech.pt"), str(zip_path),
         str(tmp_path / "unpacked")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    direct, unpacked, module = out.stdout.strip().splitlines()[-3:]
    assert module == "espnet2.asr.encoder.conformer_encoder"
    model.set_subnet("4")
    with torch.no_grad():
        enc, _ = model.encode(speech, torch.tensor([speech.size(1)]))
    assert direct == unpacked == str(model.ctc.argmax(enc)[0].tolist())


def test_bad_inputs(tmp_path):
    model, config, path = make_supernet(tmp_path)
    with pytest.raises(ValueError, match="unknown subnet .3.; valid names: 4, 8"):
        export_subnet(model, config, "3", build_from_config)
    stock = dict(config, model="espnet", encoder="conformer", model_conf={"ctc_weight": 0.5},
                 encoder_conf={k: v for k, v in config["encoder_conf"].items()
                               if k != "subnet_sizes"})
    (tmp_path / "stock.yaml").write_text(yaml.safe_dump(stock))
    with pytest.raises(ValueError, match="export supports the Conformer CTC supernet"):
        load_supernet(tmp_path / "stock.yaml", tmp_path / "model.pth")
    wider = dict(config, encoder_conf=dict(config["encoder_conf"], output_size=48))
    (tmp_path / "wider.yaml").write_text(yaml.safe_dump(wider))
    with pytest.raises(ValueError, match="model.pth does not fit the model of .*wider.yaml"):
        load_supernet(tmp_path / "wider.yaml", tmp_path / "model.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        load_supernet(path, tmp_path / "missing.pth")
