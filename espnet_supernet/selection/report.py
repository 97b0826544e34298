"""``selection.yaml`` and the mask heatmap written when a selection freezes its masks."""

import os
from typing import Dict

import torch
import yaml

from espnet_supernet.nets.subnet_cost import subnet_flops_per_second, subnet_params
from espnet_supernet.nets.subnet_space import MODULE_TYPES
from espnet_supernet.selection.abs_selection import AbsSelection


def selection_summary(selection: AbsSelection, encoder: torch.nn.Module) -> Dict:
    """Scores, ranking and each named size's mask with its params and FLOPs."""
    scores = selection.scores()
    n = len(MODULE_TYPES)
    sizes = {}
    for name, mask in selection.masks().items():
        sizes[name] = dict(
            modules=int(sum(mask)),
            mask=[int(v) for v in mask],
            kept=[f"block{j // n}.{MODULE_TYPES[j % n]}" for j, v in enumerate(mask) if v],
            encoder_params=int(subnet_params(encoder, mask)),
            encoder_gflops_per_sec=round(subnet_flops_per_second(encoder, mask) / 1e9, 4),
        )
    return dict(
        method=type(selection).__name__,
        module_order=list(MODULE_TYPES),
        scores=None if scores is None else [round(float(v), 5) for v in scores.detach()],
        ranking=[int(j) for j in selection.ranking()],
        sizes=sizes,
    )


def plot_masks(summary: Dict, path: str) -> None:
    """Blocks x module types, one panel per size; kept modules coloured, scores written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(MODULE_TYPES)
    sizes = summary["sizes"]
    scores = summary["scores"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(2.2 * len(sizes) + 1, 4), squeeze=False)
    for ax, (name, row) in zip(axes[0], sizes.items()):
        mask = torch.tensor(row["mask"], dtype=torch.float).view(-1, n)
        ax.imshow(mask.numpy(), cmap="Greens", vmin=0, vmax=1.3, aspect="auto")
        if scores is not None:
            for j, value in enumerate(scores):
                ax.text(j % n, j // n, f"{value:.2g}", ha="center", va="center", fontsize=6)
        ax.set_title(f"size {name} ({row['encoder_params'] / 1e6:.2f}M)", fontsize=9)
        ax.set_xticks(range(n), [t.replace("_", "\n") for t in MODULE_TYPES], fontsize=7)
        ax.set_yticks(range(mask.size(0)))
        ax.set_ylabel("block")
    fig.suptitle(f"{summary['method']}: kept modules per size (text: scores)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_selection_report(
    output_dir: str, selection: AbsSelection, encoder: torch.nn.Module
) -> Dict:
    """Write ``selection.yaml`` and ``selection.png`` into ``output_dir``."""
    os.makedirs(output_dir, exist_ok=True)
    summary = selection_summary(selection, encoder)
    with open(os.path.join(output_dir, "selection.yaml"), "w") as f:
        yaml.safe_dump(summary, f, sort_keys=False, default_flow_style=None)
    plot_masks(summary, os.path.join(output_dir, "selection.png"))
    return summary
