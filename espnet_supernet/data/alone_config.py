"""The training config that trains a learned selection's subnets alone.

Dynamic Encoder Size (Xu et al. 2024) and OrthoSoftmax (Xu et al. 2025) compare each
subnet of one supernet job with that same architecture trained from scratch for the same
number of updates. A learned selection (Simple-Top-k, Iterative-Zero-Out, OrthoSoftmax)
finds its subnets in training, so their alone runs need the one job's result: this module
turns the one job's config and its ``subnets.json`` (stage 12, the learned unit masks by
size name) into a static config with exactly those masks (``encoder_conf.subnet_masks``,
``selection: static``); ``model_conf.train_only=<name>`` then trains one of them alone.
``local/compare_alone.sh --runs alone`` writes one per seed of the one job, and
``data/alone_comparison.py`` pairs each learned size with the alone run of its own mask.
"""

import copy
import json
from pathlib import Path
from typing import Dict, List

import yaml

from espnet_supernet.data.alone_comparison import is_learned

# encoder keys that name or build the sizes: replaced by the explicit masks
SIZE_KEYS = ("subnet_sizes", "subnet_rule", "subnet_names", "subnet_masks")


def learned_masks(subnets: Dict[str, dict]) -> Dict[str, List[int]]:
    """``{size name: 0/1 unit mask}`` of a ``subnets.json`` (subnet_report's output)."""
    masks = {}
    for name, row in subnets.items():
        mask = row.get("mask") if isinstance(row, dict) else None
        if not mask or any(v not in (0, 1) for v in mask):
            raise ValueError(f"subnet {name!r} has no 0/1 'mask' in subnets.json: it must be "
                             "the subnet report of a learned selection's experiment "
                             "(stage 12 writes exp/<asr exp>/subnets.json)")
        masks[str(name)] = [int(v) for v in mask]
    if not masks:
        raise ValueError("subnets.json names no subnet")
    return masks


def learned_alone_config(config: dict, subnets: Dict[str, dict]) -> dict:
    """``config`` (a learned selection's training config) with its selection replaced by
    the learned masks of ``subnets``: the same encoder, model, data and optimiser, every
    size now static. Raises ValueError for a config without a learned selection."""
    if not is_learned(config):
        raise ValueError("the config has no learned selection (selection: simple_topk, "
                         "iterative_zero_out or ortho_softmax); its sizes are static "
                         "already: train them alone with model_conf.train_only=<size>")
    masks = learned_masks(subnets)
    derived = copy.deepcopy(config)
    derived["selection"] = "static"
    derived.pop("selection_conf", None)
    encoder_conf = derived.setdefault("encoder_conf", {})
    for key in SIZE_KEYS:
        encoder_conf.pop(key, None)
    encoder_conf["subnet_masks"] = masks
    return derived


def write_learned_alone_config(config: Path, subnets: Path, output: Path) -> Path:
    """Write :func:`learned_alone_config` of the files ``config`` and ``subnets`` to
    ``output`` (YAML, with a header naming both sources)."""
    for path, what in ((config, "training config"), (subnets, "subnets.json")):
        if not Path(path).is_file():
            raise FileNotFoundError(f"no {what} at {path}" + (
                ": train and decode the one job first (stages 11-12 write it)"
                if what == "subnets.json" else ""))
    derived = learned_alone_config(yaml.safe_load(Path(config).read_text()) or {},
                                   json.loads(Path(subnets).read_text()))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# {config} with its learned subnets fixed to the masks of {subnets}\n"
              "# (espnet_supernet.bin.alone_config): train one alone with "
              "--model_conf train_only=<name>\n")
    output.write_text(header + yaml.safe_dump(derived, sort_keys=False,
                                              default_flow_style=None, width=100))
    return output
