"""Tensors derived from parameters, computed once for inference instead of on every call."""

from typing import Callable, Sequence

import torch


def inference_cached(owner: torch.nn.Module, name: str, sources: Sequence[torch.Tensor],
                     build: Callable[[], torch.Tensor]):
    """``build()``, a function of the ``sources`` tensors, kept on ``owner`` while no
    gradient is needed.

    It is rebuilt when a source changes: another storage (``.to(device)``, a masked copy
    of a weight), another shape (a sliced view that starts where its weight does) or an
    in-place update (``load_state_dict``, an optimizer step, a
    BatchNorm re-estimation bump the version). The entry holds the sources' storages, so
    no new tensor can take a cached one's address. With gradients enabled nothing is
    cached, so training differentiates through ``build`` on the live parameters.

    Args:
        owner: module the result is stored on (outside its parameters and state dict).
        name: key of the result on ``owner``.
        sources: every tensor ``build`` reads.
        build: computes the derived tensor (or tuple of tensors).
    """
    if torch.is_grad_enabled():
        return build()
    key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in sources)
    store = owner.__dict__.setdefault("_inference_cache", {})
    hit = store.get(name)
    if hit is None or hit[0] != key:
        hit = store[name] = (key, build(), [t.detach() for t in sources])
    return hit[1]
