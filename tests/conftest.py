"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def feats():
    """A padded batch of 2 feature sequences (B, L, 20) and lengths (B,)."""
    torch.manual_seed(0)
    return torch.randn(2, 60, 20), torch.tensor([60, 45])
