"""TODM's training parts: alpha-divergence KD, ScaledAdam, Eden (registered in ESPnet)."""

import math

import pytest
import torch

from espnet_supernet.train.alpha_divergence import alpha_divergence
from espnet_supernet.train.eden import Eden
from espnet_supernet.train.scaled_adam import ScaledAdam

P = torch.tensor([0.5, 0.3, 0.2])
Q = torch.tensor([0.4, 0.4, 0.2])


def hand_divergence(p, q, a):
    return sum(qi * ((pi / qi) ** a - 1) for pi, qi in zip(p.tolist(), q.tolist())) / (a * (a - 1))


@pytest.mark.parametrize("alpha", [-1.0, 0.5, 1.0])
def test_alpha_divergence_values(alpha):
    _, d = alpha_divergence(P.log(), Q.log(), alpha_min=alpha, alpha_max=alpha)
    if alpha == 1.0:  # the limit: KL(p || q)
        expected = sum(pi * math.log(pi / qi) for pi, qi in zip(P.tolist(), Q.tolist()))
    else:
        expected = hand_divergence(P, Q, alpha)
    assert float(d) == pytest.approx(expected, rel=1e-5)
    assert float(d) > 0


def test_alpha_divergence_picks_the_larger_and_is_zero_on_agreement():
    _, d = alpha_divergence(P.log(), Q.log())  # alphas -1 and +1
    assert float(d) == pytest.approx(max(hand_divergence(P, Q, -1.0),
                                         float(alpha_divergence(P.log(), Q.log(), 1.0, 1.0)[1])))
    loss, d = alpha_divergence(P.log(), P.log())
    assert float(d) == pytest.approx(0.0, abs=1e-7)
    student = P.log().clone().requires_grad_(True)
    alpha_divergence(P.log(), student)[0].backward()
    assert student.grad.abs().max() < 1e-6  # nothing to learn


def test_alpha_divergence_gradient_is_the_divergences_and_spares_the_teacher():
    teacher = torch.randn(4, 6, requires_grad=True)
    student = torch.randn(4, 6, requires_grad=True)
    loss, _ = alpha_divergence(teacher, student, 0.5, 0.5, iw_clip=1e9)
    loss.sum().backward()
    assert teacher.grad is None
    # the true divergence, differentiated by autograd
    s2 = student.detach().clone().requires_grad_(True)
    p, q = teacher.detach().softmax(-1), s2.softmax(-1)
    (((p / q) ** 0.5 * q - q).sum(-1) / (0.5 * -0.5)).sum().backward()
    assert torch.allclose(student.grad, s2.grad, atol=1e-5)


def test_scaled_adam_updates_are_relative_to_the_parameter_rms():
    small = torch.nn.Parameter(torch.full((4, 4), 0.01))
    large = torch.nn.Parameter(torch.full((4, 4), 1.0))
    opt = ScaledAdam([small, large], lr=0.01, clipping_scale=None)
    small.grad = torch.ones(4, 4)
    large.grad = torch.ones(4, 4)
    before = small.detach().clone(), large.detach().clone()
    opt.step()
    d_small = (small.detach() - before[0]).abs().mean()
    d_large = (large.detach() - before[1]).abs().mean()
    assert float(d_large / d_small) == pytest.approx(100.0, rel=1e-3)


def test_scaled_adam_fits_a_regression():
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    true_w = torch.randn(8, 3)
    y = x @ true_w + 0.5
    model = torch.nn.Linear(8, 3)
    opt = ScaledAdam(model.parameters(), lr=0.05)
    first = None
    for _ in range(400):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first or float(loss.detach())
        loss.backward()
        opt.step()
    assert float(loss) < 0.01 * first


def test_eden_lr_values_and_espnet_registration():
    import importlib

    import espnet2.tasks.abs_task as abs_task

    importlib.import_module("espnet_supernet.tasks.asr")  # registers the names

    assert abs_task.optim_classes["scaledadam"] is ScaledAdam
    assert abs_task.scheduler_classes["eden"] is Eden
    opt = ScaledAdam([torch.nn.Parameter(torch.ones(2, 2))], lr=0.04)
    sched = Eden(opt, lr_batches=100, lr_epochs=2, warmup_batches=10, warmup_start=0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.04 * 0.5)  # update 0: warm-up start
    for _ in range(100):
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.04 * 2 ** -0.25)  # b = B
    sched.set_epoch(2)
    sched.step()
    expected = 0.04 * ((101 ** 2 + 100 ** 2) / 100 ** 2) ** -0.25 * 2 ** -0.25
    assert opt.param_groups[0]["lr"] == pytest.approx(expected)
    state = sched.state_dict()
    again = Eden(ScaledAdam([torch.nn.Parameter(torch.ones(2))], lr=0.04), lr_batches=100,
                 lr_epochs=2)
    again.load_state_dict(state)
    assert again.epoch == 2 and again.last_epoch == 101


def test_scaled_adam_through_the_task_options(tmp_path):
    from espnet_supernet.tasks.asr import SupernetASRTask
    from tiny_models import CONF, make_task_supernet

    model, _, _ = make_task_supernet(tmp_path)
    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(CONF / "tuning/train_supernet_conformer_tiny.yaml"),
        "--optim", "scaledadam", "--optim_conf", "lr=0.03",
        "--scheduler", "eden", "--scheduler_conf", "lr_batches=1000",
        "--token_list", str(tmp_path / "tokens.txt"), "--output_dir", str(tmp_path / "x"),
    ])  # fmt: skip
    (optimizer,) = SupernetASRTask.build_optimizers(args, model)
    assert isinstance(optimizer, ScaledAdam) and optimizer.param_groups[0]["lr"] == 0.03
