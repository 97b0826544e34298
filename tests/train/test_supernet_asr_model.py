"""SupernetASRModel: sandwich rule, shared front end, stats by slot, per-size heads, KD."""

import logging
import re

import pytest
import torch
from espnet2.asr.ctc import CTC
from espnet2.train.distributed_utils import DistributedOption
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import TrainerOptions

from tiny_models import VOCAB, make_model
from espnet_supernet.nets.switchable_linear import SwitchableLinear
from espnet_supernet.selection.simple_topk import SimpleTopKSelection
from espnet_supernet.train.supernet_asr_model import SupernetASRModel
from espnet_supernet.train.supernet_trainer import SupernetTrainer

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
    assert stats["loss_min"] is None and stats["loss_rand0"] is None  # not trained
    ran.clear()
    _, stats2, _ = model(**batch)  # step 1: sandwich (max, min, middle)
    assert ran.count(2) == 3 and set(stats2) == set(stats)
    assert torch.isfinite(stats2["loss_min"])
    with pytest.raises(ValueError, match="largest_warmup_steps"):
        make_model(largest_warmup_steps=-1)


def _train_epochs_with_espnet(model, batch, epochs: int, steps: int):
    """``epochs`` training epochs of ``steps`` batches through the recipe's trainer and
    ESPnet's Reporter; returns each epoch's summary line (what train.log shows)."""
    options = TrainerOptions(
        ngpu=0, resume=False, use_amp=False, train_dtype="float32", grad_noise=False,
        accum_grad=1, grad_clip=5.0, grad_clip_type=2.0, log_interval=1,
        no_forward_run=False, use_matplotlib=False, use_tensorboard=False, use_wandb=False,
        adapter="lora", use_adapter=False, save_strategy="all", output_dir=".",
        max_epoch=epochs, seed=0, sharded_ddp=False, patience=None, keep_nbest_models=1,
        nbest_averaging_interval=0, early_stopping_criterion=("valid", "loss", "min"),
        best_model_criterion=(("valid", "loss", "min"),), val_scheduler_criterion=(
            "valid", "loss"), unused_parameters=False, wandb_model_log_interval=-1,
        create_graph_in_tensorboard=False, gradient_as_bucket_view=True, ddp_comm_hook=None,
    )  # fmt: skip
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    reporter, summaries = Reporter(), []
    for epoch in range(1, epochs + 1):
        reporter.set_epoch(epoch)
        with reporter.observe("train") as sub:
            SupernetTrainer.train_one_epoch(
                model=model, iterator=[([f"u{i}", "u"], dict(batch)) for i in range(steps)],
                optimizers=[optim], schedulers=[None], scaler=None, reporter=sub,
                summary_writer=None, options=options, distributed_option=DistributedOption())
        summaries.append(reporter.log_message())
    return summaries


@pytest.mark.parametrize("phase", ["largest_warmup", "selection_step_1"])
def test_slots_that_did_not_train_are_left_out_of_the_log_not_nan(phase, batch, caplog):
    """Epoch 1 trains only the largest subnet (warm-up) or is a learned selection's step
    1; epoch 2 is the sandwich rule. What ESPnet logs shows each slot only where it
    trained: never ``loss_min=nan`` (warm-up) or ``loss_super=nan`` (after step 1)."""
    if phase == "largest_warmup":
        model = make_model(largest_warmup_steps=3, inplace_kd_weight=0.5)
        first_only, later = {"loss_max"}, {"loss_max", "loss_min", "loss_rand0", "loss_kd"}
    else:
        model = make_model()
        masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
        model.set_selection(SimpleTopKSelection(masks, selection_epochs=1))
        first_only, later = {"loss_super", "loss_sub"}, {"loss_max", "loss_min", "loss_rand0"}
    with caplog.at_level(logging.INFO):
        summaries = _train_epochs_with_espnet(model, batch, epochs=2, steps=3)
    assert "1epoch:train:1-1batch" in caplog.text  # ESPnet's per-interval lines too
    logged = caplog.text + "\n".join(summaries)
    assert not re.search(r"=nan\b", logged), logged
    first, second = ({k for k in re.findall(r"(\w+)=[-\d.e+]+", line) if k.startswith("loss_")}
                     for line in summaries)
    assert first_only <= first and not first & (later - {"loss_max"}), summaries[0]
    assert later <= second and not second & (first_only - {"loss_max"}), summaries[1]


def test_untrained_slots_are_the_same_on_every_rank(batch):
    """DDP: ESPnet's trainer drops None stats before averaging them over the ranks, so
    every rank must report the same keys, in the same order, with None at the same
    places, whatever its data (here: two ranks' models with different batches)."""
    ranks = [make_model(largest_warmup_steps=2, inplace_kd_weight=0.5) for _ in range(2)]
    texts = [batch["text"], torch.flip(batch["text"], dims=[1])]
    for model in ranks:
        model.train()
    for step in range(4):  # 2 warm-up steps, then the sandwich rule
        layouts = [[(k, v is None) for k, v in model(**{**batch, "text": text.clone()})[1].items()]
                   for model, text in zip(ranks, texts)]
        assert layouts[0] == layouts[1], (step, layouts)
        assert dict(layouts[0])["loss_min"] == (step < 2)


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


def test_train_only_trains_and_validates_one_size_alone(batch):
    model = make_model(per_size_ctc=True, train_only=4, largest_warmup_steps=5,
                       inplace_kd_weight=0.5, stochastic_depth_rate=0.3)
    assert model.train_only == "4" and model.active_subnet == "4"
    model.train()
    loss, stats, _ = model(**batch)
    assert torch.allclose(loss, stats["loss_max"])  # one slot, weight 1, no KD term
    assert stats.get("loss_min") is None and stats.get("loss_kd") is None
    loss.backward()
    # size 4 is the last block: blocks 0 and 1 and the other sizes' heads get no gradient
    for i in (0, 1):
        assert all(p.grad is None for p in model.encoder.encoders[i].parameters())
    assert model.encoder.encoders[2].feed_forward.w_1.weight.grad.abs().sum() > 0
    heads = model.ctc.ctc_lo.heads
    assert heads[0].weight.grad.abs().sum() > 0
    assert heads[1].weight.grad is None and heads[2].weight.grad is None
    # the same loss as the size-4 subnet's own CTC loss on the same batch
    model.eval()
    with torch.no_grad():
        _, valid, _ = model(**batch)
    assert set(k for k in valid if k.startswith("loss_")) == {"loss_4", "loss_ctc_4"}
    assert torch.allclose(valid["loss"], valid["loss_4"])


def test_train_only_rejects_unknown_size_and_learned_selection():
    with pytest.raises(ValueError, match="train_only: unknown subnet '5'.*4, 8, 12"):
        make_model(train_only="5")
    model = make_model(train_only="8")
    masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
    with pytest.raises(ValueError, match="selection: static"):
        model.set_selection(SimpleTopKSelection(masks, selection_epochs=1))
