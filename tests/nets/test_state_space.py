"""S4D diagonal SSM and MH-SSM: kernel values, convolution == recurrence, causality,
chunked streaming, gating shapes."""

import cmath
import math

import pytest
import torch

from espnet_supernet.nets.diagonal_ssm import DiagonalSSM
from espnet_supernet.nets.multi_head_ssm import MultiHeadSSM


def test_kernel_on_a_hand_checked_case():
    ssm = DiagonalSSM(channels=1, state_size=2)  # one complex mode
    with torch.no_grad():
        ssm.log_dt.fill_(math.log(0.1))
        ssm.log_a_real.fill_(math.log(0.5))
        ssm.a_imag.fill_(math.pi)
        ssm.c.copy_(torch.tensor([[[0.3, -0.2]]]))
    a, c, dt = complex(-0.5, math.pi), complex(0.3, -0.2), 0.1
    expected = [2 * (c * (cmath.exp(dt * a) - 1) / a * cmath.exp(dt * a * l)).real
                for l in range(5)]
    assert torch.allclose(ssm.kernel(5)[0], torch.tensor(expected), atol=1e-6)


def test_convolution_equals_recurrence_and_chunks():
    torch.manual_seed(0)
    ssm = DiagonalSSM(channels=6, state_size=16)
    u = torch.randn(2, 50, 6)
    with torch.no_grad():
        conv = ssm(u)
        state, steps = ssm.initial_state(2), []
        for t in range(50):
            y, state = ssm.step(u[:, t], state)
            steps.append(y)
        chunks, state = [], None
        for start in range(0, 50, 13):  # uneven chunks
            y, state = ssm.forward_chunk(u[:, start:start + 13], state)
            chunks.append(y)
    assert torch.allclose(conv, torch.stack(steps, 1), atol=1e-4)
    assert torch.allclose(conv, torch.cat(chunks, 1), atol=1e-4)


def test_causal():
    torch.manual_seed(0)
    layer = MultiHeadSSM(d_model=16, heads=4, state_size=8)
    x = torch.randn(1, 40, 16)
    changed = x.clone()
    changed[:, 25:] = torch.randn(1, 15, 16)
    with torch.no_grad():
        a, b = layer(x), layer(changed)
    assert torch.allclose(a[:, :25], b[:, :25], atol=1e-6)  # FFT rounding only
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_mh_ssm_gating_shapes_streaming_and_gradients():
    torch.manual_seed(0)
    layer = MultiHeadSSM(d_model=16, heads=4, state_size=8)
    x = torch.randn(3, 20, 16)
    y = layer(x)
    assert y.shape == (3, 20, 16)
    assert layer._gate(torch.randn(3, 20, 16)).shape == (3, 20, 8)
    with torch.no_grad():
        first, state = layer.forward_chunk(x[:, :7])
        second, _ = layer.forward_chunk(x[:, 7:], state)
    assert torch.allclose(torch.cat([first, second], 1), y.detach(), atol=1e-4)
    y.pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in layer.parameters())
    with pytest.raises(ValueError, match="even head count"):
        MultiHeadSSM(d_model=18, heads=3)
