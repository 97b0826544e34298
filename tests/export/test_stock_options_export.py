"""Exporting supernets built with ESPnet's other block layouts and options: no macaron FFN,
no conv module, conv1d FFNs, intermediate CTC with self-conditioning."""

import pytest
import torch

from espnet_supernet.export.model_export import max_encoder_difference
from espnet_supernet.export.subnet_export import export_subnet, exported_interctc
from espnet_supernet.export.supernet_loading import build_from_config
from espnet_supernet.nets.pruned_conformer_encoder import PrunedConformerEncoder
from tiny_models import make_task_supernet


def _check_export(model, config, name, mask=None, encoder="conformer"):
    export = export_subnet(model, config, name, build_from_config, mask=mask)
    assert export.encoder == encoder
    exported = build_from_config(export.config)
    exported.load_state_dict(export.state_dict, strict=True)
    if mask is None:
        model.set_subnet(name)
    else:
        model.set_subnet(None)
        model.encoder.set_subnet(mask)
    assert max_encoder_difference(model, exported, seconds=1.0) <= 1e-5
    return export, exported


@pytest.mark.parametrize("options, kinds", [
    (dict(macaron_style=False), ("mhsa", "conv", "ffn")),
    (dict(use_cnn_module=False), ("ffn_macaron", "mhsa", "ffn")),
    (dict(macaron_style=False, use_cnn_module=False), ("mhsa", "ffn")),
], ids=["no_macaron", "no_conv", "neither"])
def test_a_block_layout_without_some_modules_exports_stock_and_pruned(tmp_path, options, kinds):
    k = len(kinds)
    model, config, _ = make_task_supernet(tmp_path, subnet_sizes=[k, 2 * k], **options)
    assert model.encoder.layout.kinds == kinds and model.encoder.num_modules == 2 * k
    export, exported = _check_export(model, config, str(k))
    assert export.kept_blocks == [1]
    conf = export.config["encoder_conf"]
    assert conf["macaron_style"] == options.get("macaron_style", True)
    assert conf["use_cnn_module"] == options.get("use_cnn_module", True)
    layer = exported.encoder.encoders[0]
    assert (layer.feed_forward_macaron is None) == ("ffn_macaron" not in kinds)
    assert hasattr(layer, "norm_final") == ("conv" in kinds)  # ESPnet: only with conv
    # one module off (block 0's attention): a pruned encoder without it
    mask = [1] * (2 * k)
    mask[kinds.index("mhsa")] = 0
    export, exported = _check_export(model, config, "custom", mask, "pruned_conformer")
    assert sorted(export.blocks[0]) == sorted(kinds) and export.blocks[0]["mhsa"] == 0
    assert isinstance(exported.encoder, PrunedConformerEncoder)
    assert not hasattr(exported.encoder.encoders[0], "self_attn")


@pytest.mark.parametrize("ffn_type", ["conv1d", "conv1d-linear"])
def test_conv1d_feed_forwards_export_whole(tmp_path, ffn_type):
    model, config, _ = make_task_supernet(tmp_path, positionwise_layer_type=ffn_type,
                                          positionwise_conv_kernel_size=3)
    export, exported = _check_export(model, config, "4")
    assert type(exported.encoder.encoders[0].feed_forward).__name__ == type(
        model.encoder.encoders[0].feed_forward).__name__
    mask = [1, 1, 1, 0, 1, 0, 1, 1]  # block 0 without its FFN, block 1 without its MHSA
    export, _ = _check_export(model, config, "custom", mask, "pruned_conformer")
    assert export.blocks[0]["ffn"] == 0 and export.blocks[0]["ffn_macaron"] == 64
    assert export.blocks[1]["mhsa"] == 0


def test_conv1d_feed_forwards_cannot_be_chunked():
    from tiny_models import TINY_ENCODER
    from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder

    with pytest.raises(ValueError, match="ffn_chunks > 1 needs positionwise_layer_type: linear"):
        SupernetConformerEncoder(**{**TINY_ENCODER, "positionwise_layer_type": "conv1d",
                                    "ffn_chunks": 2})


def test_exported_interctc_layers_follow_the_kept_blocks():
    # supernet blocks 1..6 (1-based), kept 0-based [1, 3, 5] = 1-based 2, 4, 6
    assert exported_interctc([1, 2, 3, 4, 5], [1, 3, 5]) == [1, 2]
    # layer 1 reads the front end (no kept block before it): dropped; 2 and 3 both read
    # exported block 1: once; 4 and 5 read exported block 2; none reads the final output
    assert exported_interctc([3], [0, 1, 2]) == []  # block 3 is the last kept block
    assert exported_interctc([2], [0, 1, 2]) == [2]


def test_self_conditioned_intermediate_ctc_exports_with_its_layers(tmp_path):
    model, config, _ = make_task_supernet(
        tmp_path, num_blocks=3, subnet_sizes=[4, 8, 12], interctc_layer_idx=[2],
        interctc_use_conditioning=True)
    assert model.encoder.conditioning_layer is not None
    # size 8 keeps blocks 2 and 3 (1-based): layer 2 reads block 2 = exported block 1
    export, exported = _check_export(model, config, "8")
    assert export.kept_blocks == [1, 2]
    assert export.config["encoder_conf"]["interctc_layer_idx"] == [1]
    assert export.config["encoder_conf"]["interctc_use_conditioning"] is True
    assert torch.equal(exported.encoder.conditioning_layer.weight,
                       model.encoder.conditioning_layer.weight)
    # size 4 keeps block 3 only: no intermediate CTC before it, none exported
    export, _ = _check_export(model, config, "4")
    assert export.config["encoder_conf"]["interctc_layer_idx"] == []
