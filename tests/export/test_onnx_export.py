"""ONNX export of normalize -> Conformer encoder -> CTC log-softmax."""

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.layers.global_mvn import GlobalMVN

from espnet_supernet.export.onnx_export import export_onnx, onnx_parity
from espnet_supernet.nets.pruned_conformer_encoder import PrunedConformerEncoder

VOCAB, FEAT_DIM = 10, 20
ENCODER = dict(output_size=16, attention_heads=2, linear_units=32, num_blocks=2,
               cnn_module_kernel=5, input_layer="conv2d", normalize_before=True,
               macaron_style=True, rel_pos_type="latest")
REL_POS = dict(pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn")
ABS_POS = dict(pos_enc_layer_type="abs_pos", selfattention_layer_type="selfattn")
PRUNED_BLOCKS = [{"ffn_macaron": 16, "mhsa": 1, "conv": 1, "ffn": 0},
                 {"ffn_macaron": 32, "mhsa": 0, "conv": 0, "ffn": 32}]
# name -> (encoder class, positional encoding, with GlobalMVN)
VARIANTS = {
    "conformer_rel": (ConformerEncoder, REL_POS, True),
    "conformer_abs": (ConformerEncoder, ABS_POS, True),
    "pruned_rel": (PrunedConformerEncoder, REL_POS, True),
    "pruned_abs_no_norm": (PrunedConformerEncoder, ABS_POS, False),
}


def write_stats(path: Path) -> Path:
    """A GlobalMVN stats npz (count, sum, sum_square) for FEAT_DIM features."""
    rng = np.random.default_rng(0)
    count = 500.0
    mean = rng.normal(-3.0, 1.0, FEAT_DIM)
    var = rng.uniform(0.5, 4.0, FEAT_DIM)
    np.savez(path, count=np.array(count), sum=mean * count,
             sum_square=(var + mean ** 2) * count)
    return path


def make_model(variant: str, stats_dir: Path, encoder=None) -> ESPnetASRModel:
    """A tiny ESPnet CTC model (eval mode) with randomised weights."""
    torch.manual_seed(0)
    if encoder is None:
        cls, pos, _ = VARIANTS[variant]
        extra = {"blocks": PRUNED_BLOCKS} if cls is PrunedConformerEncoder else {}
        encoder = cls(FEAT_DIM, **ENCODER, **pos, **extra)
    normalize = (GlobalMVN(write_stats(stats_dir / "feats_stats.npz"))
                 if variant not in VARIANTS or VARIANTS[variant][2] else None)
    model = ESPnetASRModel(
        vocab_size=VOCAB, token_list=[f"t{i}" for i in range(VOCAB)], frontend=None,
        specaug=None, normalize=normalize, preencoder=None, encoder=encoder,
        postencoder=None, decoder=None, ctc=CTC(VOCAB, 16), joint_network=None,
        ctc_weight=1.0,
    )
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def run_onnx(path: Path, feats: torch.Tensor, lengths: torch.Tensor):
    """(log_probs (B, T', V), out_lengths (B,)) from onnxruntime on CPU."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"feats": feats.numpy(), "feats_lengths": lengths.numpy()})


def expected_length(frames: int) -> int:
    return ((frames - 1) // 2 - 1) // 2


@pytest.fixture(scope="module", params=list(VARIANTS))
def exported(request, tmp_path_factory):
    """(variant, model, ONNX path); the export traces 200-frame inputs."""
    tmp = tmp_path_factory.mktemp(request.param)
    model = make_model(request.param, tmp)
    return request.param, model, export_onnx(model, tmp / "encoder_ctc.onnx")


def test_graph_inputs_outputs(exported):
    variant, model, path = exported
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["feats", "feats_lengths"]
    assert [o.name for o in graph.graph.output] == ["log_probs", "out_lengths"]
    feat_axis = graph.graph.input[0].type.tensor_type.shape.dim[2]
    if VARIANTS[variant][2]:  # F known from GlobalMVN
        assert feat_axis.dim_value == FEAT_DIM
    # the model itself is unchanged (no masked convolution swapped in)
    for layer in model.encoder.encoders:
        conv = getattr(layer, "conv_module", None)  # pruned blocks may lack it
        if conv is not None:
            assert type(conv.depthwise_conv) is torch.nn.Conv1d


def test_parity_at_export_length(exported):
    _, model, path = exported
    feats = torch.randn(1, 200, FEAT_DIM, generator=torch.Generator().manual_seed(1))
    diff = onnx_parity(model, path, feats, torch.tensor([200]))
    assert diff <= 1e-4
    log_probs, out_lengths = run_onnx(path, feats, torch.tensor([200]))
    assert out_lengths.dtype == np.int64 and out_lengths.tolist() == [expected_length(200)]
    assert log_probs.shape == (1, expected_length(200), VOCAB)
    assert np.abs(log_probs).max() > 0.1  # not trivially zero


def test_parity_at_10x_export_length(exported):
    _, model, path = exported
    frames = 2400
    feats = torch.randn(1, frames, FEAT_DIM, generator=torch.Generator().manual_seed(2))
    assert onnx_parity(model, path, feats, torch.tensor([frames])) <= 1e-4
    _, out_lengths = run_onnx(path, feats, torch.tensor([frames]))
    with torch.no_grad():
        x, lengths = feats.clone(), torch.tensor([frames])
        if model.normalize is not None:
            x, lengths = model.normalize(x, lengths)
        _, ref_lengths, _ = model.encoder(x, lengths)
    assert out_lengths.tolist() == ref_lengths.tolist() == [expected_length(frames)]


def test_padded_batch_matches_single_items(exported):
    _, model, path = exported
    lengths = torch.tensor([2003, 1333, 517])
    feats = torch.randn(3, 2003, FEAT_DIM, generator=torch.Generator().manual_seed(3))
    for b, length in enumerate(lengths.tolist()):
        feats[b, length:] = 0.0  # padding
    log_probs, out_lengths = run_onnx(path, feats, lengths)
    assert out_lengths.tolist() == [expected_length(n) for n in lengths.tolist()]
    for b, length in enumerate(lengths.tolist()):
        single, single_lengths = run_onnx(path, feats[b:b + 1, :length].contiguous(),
                                          torch.tensor([length]))
        valid = int(single_lengths[0])
        assert valid == out_lengths[b]
        assert np.abs(log_probs[b, :valid] - single[0, :valid]).max() <= 1e-5
    assert onnx_parity(model, path, feats, lengths) <= 1e-4


@pytest.mark.parametrize("encoder", [
    lambda: TransformerEncoder(FEAT_DIM, output_size=16, attention_heads=2,
                               linear_units=32, num_blocks=1),
    lambda: ConformerEncoder(FEAT_DIM, **{**ENCODER, "input_layer": "linear"}, **REL_POS),
    lambda: ConformerEncoder(FEAT_DIM, **{**ENCODER, "rel_pos_type": "legacy"}, **REL_POS),
    lambda: ConformerEncoder(FEAT_DIM, **ENCODER, pos_enc_layer_type="scaled_abs_pos",
                             selfattention_layer_type="selfattn"),
], ids=["transformer", "linear_input", "legacy_rel_pos", "scaled_abs_pos"])
def test_unsupported_encoder_raises(encoder, tmp_path):
    model = make_model("unsupported", tmp_path, encoder=encoder())
    with pytest.raises(ValueError, match="ONNX export supports"):
        export_onnx(model, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
