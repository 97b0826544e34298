"""FastDropout and FastTanh: the same functions as torch's, computed more cheaply on CPU."""

import pytest
import torch

from espnet_supernet.nets.fast_dropout import FastDropout, dropout, keep_mask, use_fast_dropout
from espnet_supernet.nets.fast_tanh import FastTanh
from espnet_supernet.nets.mhssm_encoder import MHSSMEncoder


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_mask_drops_a_fraction_p(p):
    torch.manual_seed(0)
    keep = keep_mask(torch.Size([400, 1001]), p, torch.device("cpu"))
    assert keep.shape == (400, 1001) and keep.dtype == torch.bool
    # 400k draws: the standard error of the fraction is below 1e-3
    assert abs(1.0 - keep.float().mean().item() - p) < 4e-3
    # no structure along either axis (the int16 words of one int64 are independent)
    assert keep[:, ::4].float().mean().item() == pytest.approx(1 - p, abs=8e-3)
    assert keep[:, 3::4].float().mean().item() == pytest.approx(1 - p, abs=8e-3)


def test_dropout_scales_kept_elements_and_masks_the_gradient():
    torch.manual_seed(0)
    x = torch.randn(8, 50, 32, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    kept = y != 0
    assert torch.allclose(y[kept], x.detach()[kept] / 0.75)
    assert 0.2 < 1 - kept.float().mean().item() < 0.3
    y.backward(torch.ones_like(y))
    assert torch.allclose(x.grad, kept.float() / 0.75)
    assert torch.equal(dropout(x, 0.25, training=False), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)


def test_use_fast_dropout_replaces_modules_keeping_rates():
    enc = MHSSMEncoder(20, output_size=16, ssm_heads=2, ssm_state_size=4, linear_units=32,
                       num_blocks=2, dropout_rate=0.2)
    dropouts = [m for m in enc.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is FastDropout and m.p == 0.2 for m in dropouts)
    plain = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Dropout(0.3))
    use_fast_dropout(plain)
    assert type(plain[1]) is FastDropout and plain[1].p == 0.3
    assert not plain.eval()(torch.ones(1, 3)).eq(0).all()


def test_fast_tanh_equals_tanh_value_and_gradient():
    x = (torch.randn(2, 30, 7, 64) * 4).requires_grad_()
    ref = x.detach().clone().requires_grad_()
    y, y_ref = FastTanh()(x), torch.tanh(ref)
    assert (y - y_ref).abs().max() < 1e-6
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    assert (x.grad - ref.grad).abs().max() < 1e-5
    assert torch.autograd.gradcheck(FastTanh(), torch.randn(3, 4, dtype=torch.double,
                                                            requires_grad=True))
