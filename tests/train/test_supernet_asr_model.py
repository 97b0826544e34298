"""SupernetASRModel: sandwich rule, shared front end, stats by slot, per-size heads, KD."""

import pytest
import torch
from espnet2.asr.ctc import CTC

from tiny_models import VOCAB, make_model
from espnet_supernet.nets.switchable_linear import SwitchableLinear
from espnet_supernet.train.supernet_asr_model import SupernetASRModel

@pytest.fixture
def batch(feats):
    xs, lens = feats
    text = torch.randint(1, VOCAB - 1, (2, 5))
    return dict(speech=xs, speech_lengths=lens, text=text,
                text_lengths=torch.tensor([5, 4]))


def test_sandwich_plan_max_min_random_and_seeded():
    model = make_model(sizes=(4, 8, 12), num_random=1)
    plan = model.sandwich_plan(3)
    assert [(s, n) for s, n, _ in plan[:2]] == [("max", "12"), ("min", "4")]
    assert plan[2][:2] == ("rand0", "8")
    assert [w for _, _, w in plan] == [1.0, 0.3, 0.3]
    assert model.sandwich_plan(7) == make_model(num_random=1).sandwich_plan(7)
    assert len(make_model(sizes=(4, 12)).sandwich_plan(0)) == 2


def test_training_step_finite_loss_gradients_and_slot_stats(batch):
    model = make_model(decoder=True)
    model.train()
    calls = []
    # the positional encoding ends the front end (its convolutions run in time chunks)
    model.encoder.embed.out[-1].register_forward_hook(lambda *a: calls.append(1))
    loss, stats, weight = model(**batch)
    assert torch.isfinite(loss)
    assert calls == [1]  # the front end ran once for the 3 subnets
    assert {"loss", "loss_max", "loss_min", "loss_rand0"} <= set(stats)
    expected = stats["loss_max"] + 0.3 * stats["loss_min"] + 0.3 * stats["loss_rand0"]
    assert torch.allclose(stats["loss"], expected)
    loss.backward()
    # Shared weights: the last block is in every subnet; block 0 only in the largest.
    last = model.encoder.encoders[2].feed_forward.w_1.weight.grad
    first = model.encoder.encoders[0].feed_forward.w_1.weight.grad
    assert last is not None and torch.isfinite(last).all() and last.abs().sum() > 0
    assert first is not None and first.abs().sum() > 0
    assert model.encoder.embed.conv[0].weight.grad.abs().sum() > 0
    assert model.decoder.output_layer.weight.grad.abs().sum() > 0
    assert int(model.sandwich_step) == 1


def test_largest_warmup_trains_only_the_largest_then_sandwich(batch):
    model = make_model(largest_warmup_steps=1)
    model.train()
    ran = []
    model.encoder.encoders[0].norm_ff.register_forward_hook(lambda *a: ran.append(0))
    model.encoder.encoders[2].norm_ff.register_forward_hook(lambda *a: ran.append(2))
    loss, stats, _ = model(**batch)  # step 0: warm-up, only the largest
    assert ran == [0, 2]
    assert torch.allclose(loss, stats["loss_max"])
    assert torch.isnan(stats["loss_min"]) and torch.isnan(stats["loss_rand0"])
    ran.clear()
    _, stats2, _ = model(**batch)  # step 1: sandwich (max, min, middle)
    assert ran.count(2) == 3 and set(stats2) == set(stats)
    assert torch.isfinite(stats2["loss_min"])
    with pytest.raises(ValueError, match="largest_warmup_steps"):
        make_model(largest_warmup_steps=-1)


def test_validation_reports_every_size(batch):
    model = make_model(decoder=True).eval()
    with torch.no_grad():
        loss, stats, _ = model(**batch)
    for name in ("4", "8", "12"):
        assert f"loss_{name}" in stats and f"acc_{name}" in stats
        assert f"cer_ctc_{name}" in stats
    mean = sum(stats[f"loss_{n}"] for n in ("4", "8", "12")) / 3
    assert torch.allclose(loss, mean)
    assert model.active_subnet == "12"


def test_set_subnet_switches_encoder_and_ctc_head(batch):
    model = make_model(per_size_ctc=True)
    assert isinstance(model.ctc.ctc_lo, SwitchableLinear)
    model.set_subnet("4")
    assert model.encoder.active_mask == model.encoder.subnet_mask("4")
    assert model.ctc.ctc_lo.active_slot == 0
    with pytest.raises(ValueError, match="valid names: 4, 8, 12"):
        model.set_subnet("5")
    model.train()
    model(**batch)[0].backward()
    grads = [h.weight.grad for h in model.ctc.ctc_lo.heads]
    assert all(g is not None for g in (grads[0], grads[2]))  # min and max heads trained


def test_inplace_kd_adds_loss_to_smaller_subnets(batch):
    plain = make_model(num_random=0)
    kd = make_model(num_random=0, inplace_kd_weight=1.0)
    kd.load_state_dict(plain.state_dict())
    plain.train(), kd.train()
    _, s_plain, _ = plain(**batch)
    _, s_kd, _ = kd(**batch)
    assert torch.allclose(s_plain["loss_max"], s_kd["loss_max"])
    assert s_kd["loss_kd"] > 0
    assert torch.allclose(s_kd["loss_min"], s_plain["loss_min"] + s_kd["loss_kd"], atol=1e-5)


def test_inplace_kd_with_alpha_divergence(batch):
    kd = make_model(num_random=0, inplace_kd_weight=1.0, kd_divergence="alpha",
                    kd_alpha_range=[-1.0, 1.0])
    kd.train()
    loss, stats, _ = kd(**batch)
    assert stats["loss_kd"] > 0 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in kd.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match="kd_divergence must be kl or alpha"):
        make_model(inplace_kd_weight=1.0, kd_divergence="js")


def test_rejects_non_supernet_encoder():
    from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
    with pytest.raises(ValueError, match="needs a supernet encoder"):
        SupernetASRModel(
            vocab_size=VOCAB, token_list=[f"t{i}" for i in range(VOCAB)], frontend=None,
            specaug=None, normalize=None, preencoder=None,
            encoder=ConformerEncoder(20, output_size=16, num_blocks=1), postencoder=None,
            decoder=None, ctc=CTC(VOCAB, 16), joint_network=None, ctc_weight=1.0)
