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


# a teacher far from the student: w = p / q = (9, 1/9, 1/9), so the clip at 5 matters
P_FAR, Q_FAR = [0.9, 0.05, 0.05], [0.1, 0.45, 0.45]


def hand_alphanet(p, q, alpha, clip=5.0):
    """AlphaNet's f_divergence by hand (plain floats): (D, rho per class)."""
    w = [pi / qi for pi, qi in zip(p, q)]
    if abs(alpha) < 1e-3:  # the ratio clipped
        wc = [min(x, clip) for x in w]
        return sum(qi * -math.log(x) for qi, x in zip(q, wc)), [math.log(x) - 1 for x in wc]
    if abs(alpha - 1) < 1e-3:  # not clipped
        return sum(qi * x * math.log(x) for qi, x in zip(q, w)), w
    wa = [min(x ** alpha, clip) for x in w]
    base = 1 / (alpha * (alpha - 1))
    return (sum(qi * (x - 1) for qi, x in zip(q, wa)) * base,
            [x / alpha + base for x in wa])


@pytest.mark.parametrize("alpha, expected", [
    (1.0, 0.8 * math.log(9)),  # KL(p || q) = 0.9 ln 9 + 2 x 0.05 ln(1/9): no clip
    (0.0, -(0.1 * math.log(5) + 0.9 * math.log(1 / 9))),  # w clipped to (5, 1/9, 1/9)
    (-1.0, (0.1 * (1 / 9 - 1) + 0.9 * (5 - 1)) / 2),  # w^-1 = (1/9, 9, 9) clipped at 5
    (0.5, (0.1 * (3 - 1) + 0.9 * (1 / 3 - 1)) / -0.25),  # w^0.5 = (3, 1/3, 1/3), no clip
])
def test_alphanet_clipping_by_hand(alpha, expected):
    p, q = torch.tensor(P_FAR), torch.tensor(Q_FAR)
    _, d = alpha_divergence(p.log(), q.log(), alpha, alpha, iw_clip=5.0)
    assert float(d) == pytest.approx(expected, rel=1e-5)
    assert float(d) == pytest.approx(hand_alphanet(P_FAR, Q_FAR, alpha)[0], rel=1e-5)
    # the gradient: d/dz_j of -sum_i sg(q_i rho_i) log softmax(z)_i = q_j S - q_j rho_j
    student = q.log().clone().requires_grad_(True)
    alpha_divergence(p.log(), student, alpha, alpha, iw_clip=5.0)[0].backward()
    _, rho = hand_alphanet(P_FAR, Q_FAR, alpha)
    total = sum(qi * ri for qi, ri in zip(Q_FAR, rho))
    grad = [qj * total - qj * rj for qj, rj in zip(Q_FAR, rho)]
    assert student.grad.tolist() == pytest.approx(grad, rel=1e-5, abs=1e-6)


def test_alphanet_picks_the_larger_divergence_per_sample():
    p = torch.tensor([P_FAR, P.tolist()])
    q = torch.tensor([Q_FAR, Q.tolist()])
    _, d = alpha_divergence(p.log(), q.log(), -1.0, 1.0)
    for row, (pi, qi) in enumerate(zip(p.tolist(), q.tolist())):
        assert float(d[row]) == pytest.approx(max(hand_alphanet(pi, qi, -1.0)[0],
                                                  hand_alphanet(pi, qi, 1.0)[0]), rel=1e-5)
    # far rows: D_1 = 1.7578 > D_-1 = 1.7556, so a_max's unclipped KL is the one used
    assert float(d[0]) == pytest.approx(0.8 * math.log(9), rel=1e-5)


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
