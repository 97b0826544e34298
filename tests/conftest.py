"""Shared fixtures: tiny supernet encoders and models built directly (no task parsing)."""

import pytest
import torch

TINY_ENCODER = dict(
    input_size=20,
    output_size=16,
    attention_heads=2,
    linear_units=24,
    num_blocks=3,
    cnn_module_kernel=5,
    rel_pos_type="latest",
    pos_enc_layer_type="rel_pos",
    selfattention_layer_type="rel_selfattn",
    macaron_style=True,
    dropout_rate=0.0,
    positional_dropout_rate=0.0,
    attention_dropout_rate=0.0,
)


@pytest.fixture
def feats():
    """A padded batch of 2 feature sequences (B, L, 20) and lengths (B,)."""
    torch.manual_seed(0)
    return torch.randn(2, 60, 20), torch.tensor([60, 45])
