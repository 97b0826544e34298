"""Omni-sparsity (Yang et al. 2022): one network, many weight-sparsity levels."""
