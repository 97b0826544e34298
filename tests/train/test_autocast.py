"""Mixed precision (``use_amp: true``): the supernet models' sandwich steps under
autocast. ESPnet's trainer autocasts on CUDA only; CPU autocast (bfloat16) runs the same
dispatch of matmuls to lower precision, so dtype mismatches between our own ops (sliced
projections, the fused attention's float mask, the RNN-T scan, the alpha-divergence,
sparsity masks) show up here without a GPU.
"""

import pytest
import torch

from tiny_models import make_model, make_transducer, transducer_batch


def sandwich_step(model, batch, amp: bool):
    """(loss, stats, gradients) of one training step, with or without autocast."""
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss, stats, _ = model(**batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), stats, grads


@pytest.mark.parametrize("encoder_conf", [
    {},
    {"ffn_chunks": 4, "prune_heads": True, "subnet_rule": "modules"},
])  # fmt: skip
def test_ctc_supernet_step_under_autocast(encoder_conf):
    model = make_model(decoder=True, encoder_conf=encoder_conf).train()
    gen = torch.Generator().manual_seed(0)
    batch = dict(speech=torch.randn(2, 60, 20, generator=gen),
                 speech_lengths=torch.tensor([60, 45]),
                 text=torch.tensor([[2, 3, 4, 5], [3, 2, -1, -1]]),
                 text_lengths=torch.tensor([4, 2]))
    if encoder_conf:  # a component subnet: sliced FFN chunks and heads
        mask = [1, 0, 1, 1] + [1, 0] + [1] + [0, 1, 1, 0]
        model.encoder.set_subnet(mask * 3)
    ref_loss, ref_stats, ref_grads = sandwich_step(model, batch, amp=False)
    loss, stats, grads = sandwich_step(model, batch, amp=True)
    assert list(stats) == list(ref_stats)  # same stat keys with and without AMP
    assert loss == pytest.approx(ref_loss, rel=0.05)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
    cos = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in grads.values()]),
        torch.cat([g.flatten() for g in ref_grads.values()]), dim=0)
    assert cos > 0.95


def test_transducer_supernet_step_under_autocast(tmp_path):
    _, model = make_transducer(tmp_path, kd_weight=0.5)
    model.train()
    batch = transducer_batch()
    ref_loss, _, _ = sandwich_step(model, batch, amp=False)
    loss, _, grads = sandwich_step(model, batch, amp=True)
    assert loss == pytest.approx(ref_loss, rel=0.05)
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
