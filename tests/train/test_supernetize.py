"""espnet_supernet.bin.supernetize: a stock ESPnet Conformer model turned into a supernet."""

import json

import pytest
import torch
import yaml

from espnet_supernet.bin.supernetize import main as supernetize_main
from espnet_supernet.export.supernet_loading import build_from_config
from espnet_supernet.tasks.asr import SupernetASRTask
from espnet_supernet.train.supernetize import supernetize
from tiny_models import CONF, build_task_model


def stock_model(tmp_path, **encoder_conf):
    """A random stock ESPnet Conformer model (the tiny recipe's shape, ``model: espnet``)
    as an experiment writes it: (config dict, config path, model path)."""
    config = yaml.safe_load((CONF / "tuning/train_supernet_conformer_tiny.yaml").read_text())
    config["encoder"] = "conformer"
    config["model"] = "espnet"
    config["model_conf"] = {"ctc_weight": 0.5}
    config["encoder_conf"] = {k: v for k, v in config["encoder_conf"].items()
                              if not k.startswith("subnet")}
    config["encoder_conf"].update(macaron_style=True, **encoder_conf)
    args, model = build_task_model(tmp_path, config)
    with torch.no_grad():  # trained-looking BatchNorm statistics
        for layer in model.encoder.encoders:
            layer.conv_module.norm.running_mean.normal_()
            layer.conv_module.norm.running_var.uniform_(0.5, 2.0)
    config = vars(args)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), tmp_path / "valid.acc.ave.pth")
    return config, tmp_path / "config.yaml", tmp_path / "valid.acc.ave.pth"


def test_full_size_equals_the_original_and_the_config_is_a_supernet(tmp_path):
    config, _, model_path = stock_model(tmp_path)
    state = torch.load(model_path)
    new, converted, difference = supernetize(config, state, subnet_sizes=[4, 8])
    assert difference <= 1e-5
    assert new["encoder"] == "supernet_conformer" and new["model"] == "supernet"
    assert new["encoder_conf"]["subnet_sizes"] == [4, 8]
    assert new["encoder_conf"]["macaron_style"] is True
    assert new["model_conf"]["kd_teacher"] == "frozen" and new["model_conf"]["ctc_weight"] == 0.5
    assert new["max_epoch"] == 2 and "output_dir" not in new  # a quarter of 8 epochs
    # the config is one that asr_train's --config takes (no run-only keys)
    assert "required" in config and "required" not in new
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(new))
    parsed = SupernetASRTask.get_parser().parse_args(
        ["--config", str(tmp_path / "new.yaml"), "--output_dir", str(tmp_path / "ft")])
    assert parsed.encoder == "supernet_conformer" and parsed.model_conf["kd_teacher"] == "frozen"
    model = build_from_config(new)
    model.load_state_dict(converted, strict=True)
    for key, value in state.items():
        assert torch.equal(converted[key], value), key
        if key.startswith(("encoder.", "ctc.")):
            assert torch.equal(converted[f"kd_teacher.{key}"], value), key
    # every size's BatchNorm statistics start from the original's
    norm = model.encoder.encoders[0].conv_module.norm
    assert torch.equal(norm.slot_running_mean[0], state["encoder.encoders.0.conv_module.norm.running_mean"])


def test_stock_defaults_are_spelled_out_and_per_size_heads_copied(tmp_path):
    """A stock config without macaron_style means no macaron FFN (stock's default), not
    the supernet's default; per-size CTC heads start as the original's head."""
    config, _, model_path = stock_model(tmp_path)
    del config["encoder_conf"]["macaron_style"]
    config["model_conf"]["ctc_weight"] = 1.0
    config["decoder"] = None
    torch.manual_seed(0)
    model = build_from_config(config)
    state = model.state_dict()
    new, converted, difference = supernetize(config, state, subnet_sizes=[3, 6],
                                             teacher="inplace", per_size_ctc=True)
    assert difference <= 1e-5
    assert new["encoder_conf"]["macaron_style"] is False
    assert "kd_teacher.ctc.ctc_lo.weight" not in converted
    for slot in (0, 1):
        assert torch.equal(converted[f"ctc.ctc_lo.heads.{slot}.weight"], state["ctc.ctc_lo.weight"])


def test_frozen_teacher_stays_while_every_size_learns(tmp_path):
    config, _, model_path = stock_model(tmp_path)
    new, converted, _ = supernetize(config, torch.load(model_path), subnet_sizes=[4, 8])
    model = build_from_config(new)
    model.load_state_dict(converted, strict=True)
    teacher = {k: v.clone() for k, v in model.kd_teacher.state_dict().items()}
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    torch.manual_seed(1)
    batch = dict(speech=torch.randn(2, 8000), speech_lengths=torch.tensor([8000, 6000]),
                 text=torch.tensor([[2, 3, 4], [3, 5, -1]]), text_lengths=torch.tensor([3, 2]))
    for _ in range(2):
        optim.zero_grad()
        loss, stats, _ = model(**batch)
        loss.backward()
        optim.step()
    assert stats["loss_kd"] is not None and float(stats["loss_kd"]) > 0
    assert all(torch.equal(v, teacher[k]) for k, v in model.kd_teacher.state_dict().items())
    assert not torch.equal(model.encoder.encoders[1].feed_forward.w_1.weight,
                           teacher["encoder.encoders.1.feed_forward.w_1.weight"])


def test_command_line_with_a_packed_zip(tmp_path):
    from espnet2.main_funcs.pack_funcs import pack

    _, config_path, model_path = stock_model(tmp_path)
    pack(files={"asr_model_file": model_path}, yaml_files={"asr_train_config": config_path},
         outpath=tmp_path / "model.zip")
    out = tmp_path / "out"
    supernetize_main(["--model_zip", str(tmp_path / "model.zip"), "--outdir", str(out),
                      "--subnet_sizes", "4", "8"])
    record = json.loads((out / "supernetize.json").read_text())
    assert record["sizes"] == [4, 8] and record["max_full_size_difference"] <= 1e-5
    new = yaml.safe_load((out / "config.yaml").read_text())
    build_from_config(new).load_state_dict(torch.load(out / "model.pth"), strict=True)


def test_a_learned_selection_instead_of_static_sizes(tmp_path):
    _, config_path, model_path = stock_model(tmp_path)
    out = tmp_path / "out"
    supernetize_main(["--asr_train_config", str(config_path), "--asr_model_file",
                      str(model_path), "--outdir", str(out), "--subnet_sizes", "4", "8",
                      "--selection", "simple_topk", "--selection_conf", "selection_epochs=1"])
    new = yaml.safe_load((out / "config.yaml").read_text())
    assert new["selection"] == "simple_topk" and new["selection_conf"] == {"selection_epochs": 1}
    model = build_from_config(new)
    model.load_state_dict(torch.load(out / "model.pth"), strict=True)
    assert model.selection is not None


@pytest.mark.parametrize("change, message", [
    (dict(encoder="transformer"), "converts a Conformer encoder .* encoder: transformer"),
    (dict(encoder_conf=dict(concat_after=True)), "does not support the encoder options concat_after"),
    (dict(decoder="transducer"), "transducer decoder is not supported"),
])
def test_models_it_cannot_convert_are_refused(tmp_path, change, message):
    config, _, model_path = stock_model(tmp_path)
    if "encoder_conf" in change:
        config["encoder_conf"].update(change.pop("encoder_conf"))
    config.update(change)
    with pytest.raises(ValueError, match=message):
        supernetize(config, torch.load(model_path), subnet_sizes=[4])


def test_bad_inputs_say_what_to_do(tmp_path, capsys):
    config, config_path, model_path = stock_model(tmp_path)
    out = str(tmp_path / "out")
    other = tmp_path / "other"
    other.mkdir()
    _, _, other_model = stock_model(other, num_blocks=3)
    with pytest.raises(SystemExit, match="does not fit the model .*3 keys|unexpected"):
        supernetize_main(["--asr_train_config", str(config_path), "--asr_model_file",
                          str(other_model), "--outdir", out, "--subnet_sizes", "4"])
    with pytest.raises(SystemExit, match="give the sizes to fine-tune"):
        supernetize_main(["--asr_train_config", str(config_path), "--asr_model_file",
                          str(model_path), "--outdir", out])
    with pytest.raises(SystemExit, match="does not exist"):
        supernetize_main(["--model_zip", str(tmp_path / "none.zip"), "--outdir", out,
                          "--subnet_sizes", "4"])
    from espnet2.main_funcs.pack_funcs import pack

    pack(files={}, yaml_files={"asr_train_config": config_path}, outpath=tmp_path / "c.zip")
    with pytest.raises(SystemExit, match="holds no ASR model"):
        supernetize_main(["--model_zip", str(tmp_path / "c.zip"), "--outdir", out,
                          "--subnet_sizes", "4"])
    with pytest.raises(SystemExit, match="outside the supernet"):
        supernetize_main(["--asr_train_config", str(config_path), "--asr_model_file",
                          str(model_path), "--outdir", out, "--subnet_sizes", "12"])
