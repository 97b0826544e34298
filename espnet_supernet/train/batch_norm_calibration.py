"""Recompute every named subnet's BatchNorm statistics with the final weights.

Running statistics collected during training lag behind the weights (each slot is updated
only when its subnet is sampled) and, when shared, mix all subnets. Before deployment,
once-for-all networks (Cai et al. 2020) re-estimate them per subnet on a few training
batches; this does the same for each named size of a supernet: BatchNorm layers normalise
with batch statistics (as in training) and the average over the batches becomes the size's
statistics. Dropout and SpecAugment stay off.
"""

import logging
from typing import Iterable, List, Mapping, Optional

import torch

from espnet_supernet.nets.switchable_batch_norm import SwitchableBatchNorm1d


@torch.no_grad()
def calibrate_batch_norm(
    model: torch.nn.Module,
    batches: Iterable[Mapping[str, torch.Tensor]],
    names: Optional[List[str]] = None,
) -> None:
    """Re-estimate the BatchNorm statistics of each named subnet in place.

    Args:
        model: a supernet ASR model (``set_subnet``, ``subnet_names``, ``encode``).
        batches: dicts with ``speech`` (B, L) and ``speech_lengths`` (B,); iterated
            once per size, so pass a re-iterable (e.g. a list).
        names: sizes to calibrate (default: all).
    """
    if model.encoder.bn_stats != "per_size":
        raise ValueError("BatchNorm calibration needs encoder bn_stats: per_size")
    norms = [m for m in model.encoder.modules() if isinstance(m, SwitchableBatchNorm1d)]
    was_training, active = model.training, model.active_subnet
    model.eval()
    for name in names or model.subnet_names:
        model.set_subnet(name)
        for bn in norms:
            bn.start_calibration()
        count = 0
        for batch in batches:
            model.encode(batch["speech"], batch["speech_lengths"])
            count += 1
        updated = sum(bn.finish_calibration() for bn in norms)
        logging.info("subnet %s: calibrated %d BatchNorm layers on %d batches",
                     name, updated, count)
    model.set_subnet(active)
    model.train(was_training)
