"""A learned selection's subnets trained alone: the derived static config (data/alone_config.py)."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from espnet_supernet.data.alone_config import learned_alone_config, write_learned_alone_config
from tests.tiny_models import COMPONENT_MASK, CONF, build_task_model

FULL = [1] * len(COMPONENT_MASK)


def learned_config():
    """The tiny recipe config as an OrthoSoftmax component-wise selection (2 blocks of 11
    units: FFN chunks, heads, conv)."""
    config = yaml.safe_load((CONF / "tuning/train_supernet_conformer_tiny.yaml").read_text())
    config["encoder_conf"].pop("subnet_sizes")
    config["encoder_conf"].update(ffn_chunks=4, prune_heads=True)
    config["model_conf"]["per_size_ctc"] = False
    config["selection"] = "ortho_softmax"
    config["selection_conf"] = dict(granularity="component", criterion="flops",
                                    budgets=[0.5, 1.0], selection_epochs=1)
    return config


SUBNETS = {"0.5": {"mask": COMPONENT_MASK, "encoder_params": 1}, "1.0": {"mask": FULL}}


def test_learned_subnet_alone_trains_exactly_its_mask(tmp_path):
    derived = learned_alone_config(learned_config(), SUBNETS)
    assert derived["selection"] == "static" and "selection_conf" not in derived
    assert derived["encoder_conf"]["subnet_masks"] == {"0.5": COMPONENT_MASK, "1.0": FULL}
    assert derived["encoder_conf"]["ffn_chunks"] == 4  # the encoder is unchanged
    derived["model_conf"]["train_only"] = 0.5  # as --model_conf train_only=0.5 parses it
    _, model = build_task_model(tmp_path, derived)
    assert model.subnet_names == ["0.5", "1.0"] and model.active_subnet == "0.5"
    rows = model.encoder.subnet_mask_table.tolist()
    assert rows[0] == COMPONENT_MASK and rows[1] == FULL
    model.train()
    torch.manual_seed(0)
    loss, _, _ = model(speech=torch.randn(2, 8000), speech_lengths=torch.tensor([8000, 6000]),
                       text=torch.tensor([[2, 3, 4], [3, 2, -1]]),
                       text_lengths=torch.tensor([3, 2]))
    loss.backward()
    block1 = model.encoder.encoders[1]
    # block 1's mask [0,0,0,0, 1,1, 0, 0,0,0,1] keeps its two heads and the FFN's last
    # chunk (hidden units 48-63 of 64): its conv and macaron FFN get no gradient, the
    # FFN's other chunks a zero one; block 0 keeps its conv
    assert block1.conv_module.pointwise_conv1.weight.grad is None
    assert block1.feed_forward_macaron.w_1.weight.grad is None
    rows = block1.feed_forward.w_1.weight.grad.abs().sum(dim=1)
    assert rows[:48].sum() == 0 and (rows[48:] > 0).all()
    assert block1.self_attn.linear_q.weight.grad.abs().sum() > 0
    assert model.encoder.encoders[0].conv_module.pointwise_conv1.weight.grad.abs().sum() > 0


def test_bad_input_says_what_to_do(tmp_path):
    static = yaml.safe_load((CONF / "tuning/train_supernet_conformer_tiny.yaml").read_text())
    with pytest.raises(ValueError, match="no learned selection.*train_only"):
        learned_alone_config(static, SUBNETS)
    with pytest.raises(ValueError, match="subnet '0.5' has no 0/1 'mask'"):
        learned_alone_config(learned_config(), {"0.5": {"encoder_params": 3}})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(learned_config()))
    with pytest.raises(FileNotFoundError, match="no subnets.json.*stages 11-12"):
        write_learned_alone_config(tmp_path / "c.yaml", tmp_path / "none.json", tmp_path / "o")


def test_command_line_writes_a_config_the_task_reads(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(learned_config()))
    (tmp_path / "subnets.json").write_text(json.dumps(SUBNETS))
    out = tmp_path / "alone" / "c_seed0.yaml"
    done = subprocess.run([sys.executable, "-m", "espnet_supernet.bin.alone_config",
                           "--config", str(tmp_path / "c.yaml"), "--subnets",
                           str(tmp_path / "subnets.json"), "--output", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(out.read_text())["encoder_conf"]["subnet_masks"]["0.5"] == COMPONENT_MASK
    bad = subprocess.run([sys.executable, "-m", "espnet_supernet.bin.alone_config",
                          "--config", str(tmp_path / "c.yaml"), "--subnets",
                          str(tmp_path / "missing.json"), "--output", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "alone_config: no subnets.json" in bad.stderr
