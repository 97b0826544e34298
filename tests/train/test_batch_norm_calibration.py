"""Per-size BatchNorm re-estimation with the final weights."""

import pytest
import torch

from tiny_models import make_model
from espnet_supernet.train.batch_norm_calibration import calibrate_batch_norm


def test_each_size_gets_the_average_of_its_own_batch_statistics(feats):
    model = make_model(sizes=(4, 12))
    xs, lens = feats
    batches = [dict(speech=xs, speech_lengths=lens),
               dict(speech=xs[:1] * 2 + 1, speech_lengths=lens[:1])]
    norm = model.encoder.encoders[2].conv_module.norm  # runs in both sizes
    expected = {}
    for name in ("4", "12"):
        model.set_subnet(name)
        norm.start_calibration()
        with torch.no_grad():
            for b in batches:
                model.encode(b["speech"], b["speech_lengths"])
        expected[name] = torch.stack([m for m, _ in norm._calibration]).mean(0)
        norm.finish_calibration()
    shared_before = norm.running_mean.clone()
    model.train()
    calibrate_batch_norm(model, batches)
    assert model.training and model.active_subnet == "12"
    for slot, name in enumerate(("4", "12")):
        assert torch.allclose(norm.slot_running_mean[slot], expected[name], atol=1e-6)
    assert not torch.allclose(expected["4"], expected["12"], atol=1e-3)
    assert torch.equal(norm.running_mean, shared_before)  # shared statistics untouched
    # A BatchNorm the small size skips keeps its slot as it was.
    skipped = model.encoder.encoders[0].conv_module.norm
    assert torch.equal(skipped.slot_running_mean[0], torch.zeros_like(skipped.running_mean))


def test_calibration_needs_per_size_statistics(feats):
    model = make_model()
    model.encoder.bn_stats = "shared"
    with pytest.raises(ValueError, match="per_size"):
        calibrate_batch_norm(model, [])
