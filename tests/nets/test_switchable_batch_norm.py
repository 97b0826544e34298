"""Per-subnet BatchNorm statistics."""

import torch

from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d


def test_slots_track_their_own_statistics_and_shared_tracks_all():
    torch.manual_seed(0)
    bn = SwitchableBatchNorm1d(3, num_slots=2, momentum=1.0).train()
    a, b = torch.randn(4, 3, 10) + 5, torch.randn(4, 3, 10) - 5
    bn.active_slot = 0
    bn(a)
    bn.active_slot = 1
    bn(b)
    assert torch.allclose(bn.slot_running_mean[0], a.mean((0, 2)), atol=1e-5)
    assert torch.allclose(bn.slot_running_mean[1], b.mean((0, 2)), atol=1e-5)
    assert torch.allclose(bn.running_mean, b.mean((0, 2)), atol=1e-5)  # momentum 1
    bn.eval()
    bn.active_slot = 0
    out0 = bn(a)
    assert out0.mean().abs() < 1e-4  # normalised with its own statistics
    bn.active_slot = None
    assert bn(a).mean() > 5  # the shared statistics do not fit slot 0


def test_stock_batch_norm_state_loads_strict_and_fills_slots():
    stock = torch.nn.BatchNorm1d(3)
    stock.running_mean.fill_(2.0)
    bn = SwitchableBatchNorm1d(3, num_slots=4)
    bn.load_state_dict(stock.state_dict(), strict=True)
    assert torch.equal(bn.slot_running_mean, torch.full((4, 3), 2.0))
