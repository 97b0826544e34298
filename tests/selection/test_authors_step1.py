"""The authors' step-1 choices (Dynamic Encoder Size, RWTH's code) against the defaults:
Simple-Top-k's masked modules computed (x 0) or skipped."""

import pytest
import torch

from tiny_models import VOCAB, make_model
from espnet_supernet.selection.simple_topk import SimpleTopKSelection


def _step1(feats, masked_modules):
    """One step-1 forward/backward (k = 6 of 12 modules): loss, score gradient, and how
    many times each block's modules ran."""
    model = make_model(sizes=(4, 8, 12))
    masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
    model.set_selection(SimpleTopKSelection(masks, selection_steps=10, anneal_interval=100,
                                            anneal_decrement=6, init_std=0.5,
                                            masked_modules=masked_modules))
    runs = []
    for i, layer in enumerate(model.encoder.encoders):
        for name in ("norm_ff_macaron", "norm_mha", "norm_conv", "norm_ff"):  # pre-norms
            getattr(layer, name).register_forward_hook(lambda *a, key=(i, name): runs.append(key))
    model.train()
    xs, lens = feats
    text = torch.randint(1, VOCAB - 1, (2, 5), generator=torch.Generator().manual_seed(1))
    loss, stats, _ = model(speech=xs, speech_lengths=lens, text=text,
                           text_lengths=torch.tensor([5, 4]))
    loss.backward()
    return stats, model.selection.score.grad.clone(), runs, model.selection


def test_masked_modules_compute_gives_every_score_a_direct_gradient(feats):
    skip_stats, skip_grad, skip_runs, sel = _step1(feats, "skip")
    comp_stats, comp_grad, comp_runs, _ = _step1(feats, "compute")
    hard = sel.subnet_gates(0)[0]
    masked = [j for j, g in enumerate(hard) if not isinstance(g, torch.Tensor)]
    assert len(masked) == 6  # k = 12 - 6
    # the same forward: a computed masked module is multiplied by exactly 0
    assert torch.allclose(skip_stats["loss_sub"], comp_stats["loss_sub"], atol=1e-5)
    # skip: the supernet pass runs all 12 modules, the subnet pass only the 6 kept ones
    assert len(skip_runs) == 12 + 6 and len(comp_runs) == 12 + 12
    # compute: every score gets a gradient; the masked ones differ from skip's (which
    # come only through the k-hot's coupling)
    assert (comp_grad.abs() > 0).all()
    diff = (comp_grad - skip_grad).abs()
    assert (diff[masked] > 1e-6 * comp_grad.abs().max()).all()


def test_masked_modules_option_is_validated():
    model = make_model()
    masks = {n: model.encoder.subnet_mask(n) for n in model.subnet_names}
    with pytest.raises(ValueError, match="masked_modules must be one of compute, skip"):
        SimpleTopKSelection(masks, masked_modules="zero")
