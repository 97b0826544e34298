"""``model: supernet_transducer`` (TODM): RNN-T sandwich over MH-SSM subnets, in-place
alpha-divergence KD, adaptive dropout, per-size decoding."""

import pytest
import torch
import yaml

from espnet_supernet.tasks.asr import SupernetASRTask
from espnet_supernet.train.supernet_transducer_model import SupernetTransducerModel

from tiny_models import TRANSDUCER_ENCODER as ENCODER
from tiny_models import TRANSDUCER_TOKENS as TOKENS
from tiny_models import make_transducer as build
from tiny_models import transducer_batch as batch


def test_sandwich_step_with_kd(tmp_path):
    _, model = build(tmp_path)
    assert isinstance(model, SupernetTransducerModel)
    assert model.subnet_names == ["small", "mid", "full"]
    model.train()
    loss, stats, _ = model(**batch())
    assert torch.isfinite(loss)
    assert {"loss_max", "loss_min", "loss_rand0", "kd_min", "kd_rand0"} <= set(stats)
    assert stats["kd_min"] > 0
    loss.backward()
    ffn = model.encoder.encoders[0].feed_forward.w_1.weight.grad
    assert ffn is not None and torch.isfinite(ffn).all()  # shared by every subnet
    assert model.joint_network.lin_out.weight.grad is not None


@pytest.mark.parametrize("train_only", [None, "small"])
def test_training_stats_are_the_slots_that_trained(train_only, tmp_path):
    """No warm-up or phase here: every step reports exactly its plan's slots, each a
    finite loss (no NaN or None placeholder for a slot that did not train)."""
    _, model = build(tmp_path, train_only=train_only)
    model.train()
    for step in range(3):
        slots = [slot for slot, _, _ in model.plan(step)]
        _, stats, _ = model(**batch())
        kd = [f"kd_{slot}" for slot in slots[1:]]
        assert set(stats) == {"loss", *(f"loss_{slot}" for slot in slots), *kd}
        assert all(v is not None and torch.isfinite(v).all() for v in stats.values()), stats


def test_adaptive_dropout_and_validation_reports_every_size(tmp_path):
    _, model = build(tmp_path)
    scale = model.dropout_scale
    assert scale["full"] == 1.0 and 0 < scale["small"] < scale["mid"] < 1.0
    model.set_subnet("small")
    drops = [m.p for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(p == pytest.approx(0.1 * scale["small"]) for p in drops)
    model.eval()
    with torch.no_grad():
        _, stats, _ = model(**batch())
    for name in ("small", "mid", "full"):
        assert torch.isfinite(stats[f"loss_{name}"]) and f"cer_transducer_{name}" in stats
    _, fixed = build(tmp_path, adaptive_dropout=False)
    assert set(fixed.dropout_scale.values()) == {1.0}


def test_train_only_trains_and_validates_one_size_alone(tmp_path):
    _, model = build(tmp_path, train_only="small")
    assert model.plan(0) == model.plan(7) == [("max", "small", 1.0)]
    assert set(model.dropout_scale.values()) == {1.0}  # its own dropout, not scaled down
    assert model.active_subnet == "small"
    model.train()
    loss, stats, _ = model(**batch())
    assert set(stats) == {"loss_max", "loss"}  # no KD: the size is its own teacher
    loss.backward()
    layers = model.encoder.encoders
    assert layers[0].feed_forward.w_1.weight.grad is not None
    assert layers[2].feed_forward.w_1.weight.grad is None  # depth 1: block 2 never ran
    model.eval()
    with torch.no_grad():
        _, stats, _ = model(**batch())
    assert "cer_transducer_small" in stats and "loss_full" not in stats
    with pytest.raises(ValueError, match="train_only: unknown subnet 'huge'.*small, mid"):
        build(tmp_path, train_only="huge")


def test_per_size_decoding_with_transducer_beam_search(tmp_path):
    from espnet_supernet.decode.speech2text import speech2text

    args, model = build(tmp_path)
    config = vars(args)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    for size in ("small", "full"):
        s2t = speech2text(size, asr_train_config=str(tmp_path / "config.yaml"),
                          asr_model_file=str(tmp_path / "model.pth"), beam_size=2, nbest=1)
        assert s2t.beam_search_transducer is not None
        assert s2t.asr_model.active_subnet == size
        text = s2t(torch.randn(8000))[0][0]
        assert isinstance(text, str)
    with pytest.raises(ValueError, match="unknown subnet 'huge'"):
        speech2text("huge", asr_train_config=str(tmp_path / "config.yaml"),
                    asr_model_file=str(tmp_path / "model.pth"))


def test_needs_a_transducer_decoder_and_a_supernet_encoder(tmp_path):
    args = SupernetASRTask.get_parser().parse_args([
        "--encoder", "supernet_mhssm", "--model", "supernet_transducer",
        "--token_list", str(tmp_path / "t.txt"), "--output_dir", str(tmp_path),
    ])  # fmt: skip
    args.token_list = TOKENS
    args.encoder_conf = ENCODER
    args.decoder, args.model_conf = "rnn", {"ctc_weight": 0.3}
    with pytest.raises(ValueError, match="needs decoder: transducer"):
        SupernetASRTask.build_model(args)


def test_subnet_report_of_the_mhssm_supernet(tmp_path):
    from espnet_supernet.deploy.subnet_report import subnet_report

    _, model = build(tmp_path)
    report = subnet_report(model, seconds=2.0)
    assert list(report) == ["small", "mid", "full"]
    full = report["full"]
    assert full["encoder_params"] == sum(p.numel() for p in model.encoder.parameters())
    assert full["total_params"] == sum(p.numel() for p in model.parameters())
    flops = [report[n]["encoder_gflops_per_sec"] for n in report]
    assert 0 < flops[0] < flops[1] < flops[2]
    assert report["small"]["depth"] == 1 and report["small"]["width"] == 0.5
