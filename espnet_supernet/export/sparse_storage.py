"""Compressed storage of a sparse model's weights: a bitmask plus the nonzero values.

A tensor that is at least ``min_sparsity`` zeros is stored as its shape, a packed bitmask
(1 bit per element) and its nonzero values, so the file takes about
``density x dense size + numel / 8`` bytes; other tensors are stored as they are. The
file is a ``torch.save`` of ``{"format": FORMAT, "dense": {...}, "sparse": {...}}``;
``espnet_supernet.bin.asr_inference`` recognises it and loads it into the model of the
config (``load_state_dict(strict=True)``).
"""

from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

FORMAT = "espnet_supernet.sparse_state_dict.v1"


def compress_state_dict(state: Dict[str, torch.Tensor],
                        min_sparsity: float = 0.1) -> dict:
    """The storage dict of ``state``: floating tensors with >= ``min_sparsity`` zeros as
    bitmask + values."""
    dense, sparse = {}, {}
    for key, value in state.items():
        value = value.detach().cpu()
        nonzero = value != 0
        if value.is_floating_point() and value.numel() >= 64 and \
                1.0 - float(nonzero.float().mean()) >= min_sparsity:
            bits = np.packbits(nonzero.flatten().numpy())
            sparse[key] = {"shape": list(value.shape), "bitmask": torch.from_numpy(bits),
                           "values": value.flatten()[nonzero.flatten()].clone()}
        else:
            dense[key] = value.clone()
    return {"format": FORMAT, "dense": dense, "sparse": sparse}


def decompress_state_dict(stored: dict) -> Dict[str, torch.Tensor]:
    """The dense state dict of a storage dict."""
    if stored.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file (format {stored.get('format')!r})")
    state = dict(stored["dense"])
    for key, item in stored["sparse"].items():
        numel = int(np.prod(item["shape"]))
        mask = torch.from_numpy(np.unpackbits(item["bitmask"].numpy(), count=numel)
                                .astype(bool))
        flat = torch.zeros(numel, dtype=item["values"].dtype)
        flat[mask] = item["values"]
        state[key] = flat.view(item["shape"])
    return state


def read_sparse_file(path: Union[str, Path]) -> Optional[Dict[str, torch.Tensor]]:
    """The dense state dict stored in ``path`` if it is a sparse file, else None."""
    stored = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(stored, dict) and stored.get("format") == FORMAT:
        return decompress_state_dict(stored)
    return None
