"""Every recipe config builds through SupernetASRTask (selection and optimizer groups too)."""

import argparse
import re
from pathlib import Path

import pytest
import yaml

from espnet_supernet.selection.iterative_zero_out import IterativeZeroOutSelection
from espnet_supernet.selection.ortho_softmax import OrthoSoftmaxSelection
from espnet_supernet.selection.simple_topk import SimpleTopKSelection
from espnet_supernet.selection.static import StaticSelection
from espnet_supernet.tasks.asr import SupernetASRTask

CONF = Path(__file__).resolve().parents[2] / "egs2/librispeech/supernet/conf"
CONFIGS = sorted(p.name for p in CONF.glob("train_supernet_*.yaml")) + sorted(
    f"tuning/{p.name}" for p in (CONF / "tuning").glob("train_supernet_*.yaml")) + sorted(
    f"../../../tedlium2/supernet/conf/{p.name}"
    for p in (CONF / "../../../tedlium2/supernet/conf").glob("train_supernet_*.yaml"))
TODM_CONFIGS = sorted(p.name for p in CONF.glob("train_todm_*.yaml")) + sorted(
    f"tuning/{p.name}" for p in (CONF / "tuning").glob("train_todm_*.yaml"))
LM_CONFIGS = sorted(p.name for p in CONF.glob("train_lm_*.yaml")) + sorted(
    f"tuning/{p.name}" for p in (CONF / "tuning").glob("train_lm_*.yaml"))
METHOD = {"simple_topk": SimpleTopKSelection, "iterative_zero_out": IterativeZeroOutSelection,
          "ortho_softmax": OrthoSoftmaxSelection}


def build(config: str, tmp_path):
    parser = SupernetASRTask.get_parser()
    args = parser.parse_args([
        "--config", str(CONF / config), "--token_list", str(tmp_path / "tokens.txt"),
        "--output_dir", str(tmp_path / "exp"), "--normalize", "none",
    ])  # fmt: skip
    (tmp_path / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", "a", "b", "<sos/eos>"]))
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    return args, SupernetASRTask.build_model(args)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_builds_with_its_selection(config, tmp_path):
    args, model = build(config, tmp_path)
    conf = yaml.safe_load((CONF / config).read_text())
    if conf.get("sparsity"):  # Omni-sparsity: the levels are the subnets
        levels = conf["sparsity_conf"]["levels"]
        assert model.selection is None and len(model.subnet_names) == len(levels)
        assert model.subnet_names[0] == f"sp{round(100 * max(levels)):g}"
        assert len(SupernetASRTask.build_optimizers(args, model)[0].param_groups) == 1
        return
    method = conf.get("selection", "static")
    assert type(model.selection) is METHOD.get(method, StaticSelection)
    assert list(model.selection.sizes) == model.subnet_names
    optimizers = SupernetASRTask.build_optimizers(args, model)
    groups = optimizers[0].param_groups
    if method == "static" or conf["selection_conf"].get("score_group") == "model":
        assert len(groups) == 1
        assert sum(p.numel() for p in groups[0]["params"]) == sum(
            p.numel() for p in model.parameters())
    else:
        assert len(groups) == 2 and groups[1]["params"] == list(model.selection.parameters())
        assert groups[1]["lr"] == args.selection_conf["score_lr"]
        n_model = sum(p.numel() for p in model.parameters())
        assert sum(p.numel() for g in groups for p in g["params"]) == n_model


def test_ortho_softmax_budgets_name_the_subnets(tmp_path):
    args, model = build("train_supernet_conformer_demo_ortho_softmax.yaml", tmp_path)
    assert model.subnet_names == ["0.55", "0.78", "1.0"]
    assert args.encoder_conf["subnet_names"] == model.subnet_names  # lands in config.yaml
    assert model.selection.score_matrix.shape == (78, 78)  # 6 blocks x (4 + 4 + 1 + 4)
    again = SupernetASRTask.build_model(args)  # rebuilding from the saved args works
    assert again.subnet_names == model.subnet_names
    args.encoder_conf["subnet_sizes"] = [8, 16]
    with pytest.raises(ValueError, match="remove subnet_sizes"):
        SupernetASRTask.build_model(args)


def test_scores_in_the_models_group(tmp_path):
    """score_group: model (the authors') puts the scores in the model's group: one group,
    the model's lr and weight decay; score_lr then is an error."""
    args, _ = build("train_supernet_conformer_demo_ortho_softmax.yaml", tmp_path)
    args.selection_conf = {k: v for k, v in args.selection_conf.items() if k != "score_lr"}
    args.selection_conf["score_group"] = "model"
    args.optim_conf = {**args.optim_conf, "weight_decay": 1e-6}
    model = SupernetASRTask.build_model(args)
    (group,) = SupernetASRTask.build_optimizers(args, model)[0].param_groups
    assert {id(p) for p in model.selection.parameters()} <= {id(p) for p in group["params"]}
    assert group["weight_decay"] == 1e-6
    args.selection_conf["score_lr"] = 0.01
    with pytest.raises(ValueError, match="remove them with score_group: model"):
        SupernetASRTask.build_model(args)


def test_selection_needs_a_supernet_model(tmp_path):
    with pytest.raises(ValueError, match="needs model: supernet"):
        SupernetASRTask.build_model(argparse.Namespace(
            **{**vars(build("tuning/train_supernet_conformer_tiny.yaml", tmp_path)[0]),
               "model": "espnet", "encoder": "conformer",
               "encoder_conf": {"output_size": 32}, "model_conf": {"ctc_weight": 0.5},
               "selection": "simple_topk"}))


def lstm_lm_params(vocab: int, unit: int, nlayers: int, nhid: int, tied: bool) -> int:
    """Parameters of ESPnet's ``seq_rnn`` LSTM LM: embedding (V x unit), each LSTM
    layer's input and recurrent weights of the 4 gates and their two biases, the output
    layer (nhid x V, shared with the embedding when tied, and its bias)."""
    lstm = sum(4 * nhid * ((unit if layer == 0 else nhid) + nhid + 2)
               for layer in range(nlayers))
    return vocab * unit + lstm + (0 if tied else nhid * vocab) + vocab


@pytest.mark.parametrize("config", LM_CONFIGS)
def test_lm_config_builds_with_espnet(config, tmp_path):
    """The LM has exactly the shapes its config (and its header's "N-layer, U-unit") says."""
    from espnet2.tasks.lm import LMTask

    args = LMTask.get_parser().parse_args([
        "--config", str(CONF / config), "--token_list", str(tmp_path / "tokens.txt"),
        "--output_dir", str(tmp_path / "exp"),
    ])  # fmt: skip
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    model = LMTask.build_model(args)
    text = (CONF / config).read_text()
    conf = yaml.safe_load(text)
    assert conf["lm"] == "seq_rnn" and conf["lm_conf"]["rnn_type"] == "lstm", conf
    lm_conf = conf["lm_conf"]
    unit, nlayers = lm_conf["unit"], lm_conf["nlayers"]
    nhid = lm_conf.get("nhid") or unit
    expected = lstm_lm_params(len(args.token_list), unit, nlayers, nhid,
                              lm_conf.get("tie_weights", False))
    assert sum(p.numel() for p in model.parameters()) == expected
    rnn = model.lm.rnn
    assert (rnn.num_layers, rnn.input_size, rnn.hidden_size) == (nlayers, unit, nhid)
    described = re.search(r"(\d+)-layer, (\d+)-unit", text.split("\nlm:", 1)[0])
    if described:  # the header comment names the shapes
        assert (int(described[1]), int(described[2])) == (nlayers, unit), described[0]


@pytest.mark.parametrize("config", TODM_CONFIGS)
def test_todm_config_builds_a_transducer_supernet(config, tmp_path):
    from espnet_supernet.train.scaled_adam import ScaledAdam
    from espnet_supernet.train.supernet_transducer_model import SupernetTransducerModel

    args, model = build(config, tmp_path)
    assert isinstance(model, SupernetTransducerModel)
    assert model.subnet_names[-1] == "full" and len(model.subnet_names) >= 2
    (optimizer,) = SupernetASRTask.build_optimizers(args, model)
    assert isinstance(optimizer, ScaledAdam)
    groups = optimizer.param_groups
    n_model = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for g in groups for p in g["params"]) == n_model
    if args.ssm_lr_scale != 1.0:  # the SSM dynamics train slower
        ssm = model.encoder.encoders[0].self_attn.mhssm.ssm
        assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(
            args.optim_conf["lr"] * args.ssm_lr_scale)
        assert {id(p) for p in groups[1]["params"]} >= {id(ssm.log_dt), id(ssm.a_imag)}
        assert id(ssm.c) not in {id(p) for p in groups[1]["params"]}
    else:
        assert len(groups) == 1



@pytest.mark.parametrize("config", sorted(p.name for p in CONF.glob("train_supernet_conformer_paper*.yaml")))
def test_paper_configs_are_the_authors_recipe(config, tmp_path):
    """CTC only, VGG front end, AdamW (eps 1e-16, wd 1e-3), no clipping, and the one-cycle
    schedule 4e-6 -> 4e-4 -> 4e-6 -> 1e-8 that stays at 1e-8 after its last step."""
    from espnet2.tasks.abs_task import optim_classes, scheduler_classes

    args, model = build(config, tmp_path)
    assert model.ctc_weight == 1.0 and model.decoder is None
    assert type(model.encoder.embed).__name__ == "VGG4Subsampling"
    assert args.grad_clip == float("inf") and args.accum_grad == 1
    (optimizer,) = SupernetASRTask.build_optimizers(args, model)
    assert isinstance(optimizer, optim_classes["adamw"])
    assert optimizer.defaults["eps"] == 1e-16 and optimizer.defaults["weight_decay"] == 1e-3
    scheduler = scheduler_classes[args.scheduler](optimizer, **args.scheduler_conf)
    lrs = {}
    for step in (0, 329399, 658799, 731999, 2_000_000):
        scheduler.last_epoch = step
        lrs[step] = scheduler.get_lr()[0]
    assert lrs[0] == pytest.approx(4e-6, rel=1e-3) and lrs[329399] == pytest.approx(4e-4)
    assert lrs[658799] == pytest.approx(4e-6, rel=1e-3)
    assert lrs[731999] == pytest.approx(1e-8) and lrs[2_000_000] == pytest.approx(1e-8)
