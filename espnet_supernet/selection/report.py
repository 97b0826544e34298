"""``selection.yaml`` and the mask heatmap written when a selection freezes its masks."""

import os
from typing import Dict, List, Sequence

import torch
import yaml

from espnet_supernet.nets.subnet_cost import flops_table, params_table
from espnet_supernet.nets.subnet_space import UnitLayout
from espnet_supernet.selection.abs_selection import AbsSelection


def kept_components(layout: UnitLayout, units: Sequence[int]) -> List[str]:
    """Kept modules, with the kept chunks / heads of partially kept ones, e.g.
    ``block0.conv``, ``block1.mhsa[heads 0,3]``, ``block2.ffn[chunks 1]``."""
    out = []
    for m, name in enumerate(layout.module_names()):
        a, b = layout.module_span(m)
        kept = [u for u in range(b - a) if units[a + u]]
        if not kept:
            continue
        if len(kept) < b - a:
            label = "heads" if layout.kind(m) == "mhsa" else "chunks"
            name += f"[{label} {','.join(map(str, kept))}]"
        out.append(name)
    return out


def selection_summary(selection: AbsSelection, encoder: torch.nn.Module) -> Dict:
    """Scores, ranking and each named size's mask with its components, params and FLOPs."""
    layout: UnitLayout = encoder.layout
    params, flops = params_table(encoder), flops_table(encoder)
    scores = selection.scores()
    sizes = {}
    for name, mask in selection.masks().items():
        units = layout.as_units(mask)
        modules = layout.modules_of(units)
        channels = getattr(encoder, "subnet_frontend_channels", {}).get(name)
        row = dict(modules=int(sum(modules)))
        if layout.num_units != layout.num_modules:
            row["units"] = int(sum(units))
        row.update(
            mask=[int(v) for v in mask],
            module_fraction=[round(sum(units[a:b]) / (b - a), 4)
                             for a, b in map(layout.module_span, range(layout.num_modules))],
            kept=kept_components(layout, units),
            encoder_params=int(params.subnet(units, channels)),
            params_fraction=round(params.subnet(units, channels) / params.total, 4),
            encoder_gflops_per_sec=round(flops.subnet(units, channels) / 1e9, 4),
            flops_fraction=round(flops.subnet(units, channels) / flops.total, 4),
        )
        if channels is not None:
            row["frontend_channels"] = channels
        sizes[name] = row
    return dict(
        method=type(selection).__name__,
        module_order=list(layout.kinds),
        units_per_module=dict(zip(layout.kinds, layout.per_module)),
        **selection.report_fields(),
        scores=None if scores is None else [round(float(v), 5) for v in scores.detach()],
        ranking=[int(j) for j in selection.ranking()],
        sizes=sizes,
    )


def plot_masks(summary: Dict, path: str) -> None:
    """Blocks x module types, one panel per size; kept modules coloured, scores written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = summary["module_order"]
    n = len(kinds)
    sizes = summary["sizes"]
    scores = summary["scores"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(2.2 * len(sizes) + 1, 4), squeeze=False)
    for ax, (name, row) in zip(axes[0], sizes.items()):
        kept = torch.tensor(row["module_fraction"], dtype=torch.float).view(-1, n)
        ax.imshow(kept.numpy(), cmap="Greens", vmin=0, vmax=1.3, aspect="auto")
        if scores is not None and len(scores) == kept.numel():
            for j, value in enumerate(scores):
                ax.text(j % n, j // n, f"{value:.2g}", ha="center", va="center", fontsize=6)
        elif kept.numel() and (0 < kept).logical_and(kept < 1).any():
            for j, value in enumerate(row["module_fraction"]):
                if 0 < value < 1:
                    ax.text(j % n, j // n, f"{value:.2g}", ha="center", va="center",
                            fontsize=6)
        ax.set_title(f"size {name} ({row['encoder_params'] / 1e6:.2f}M)", fontsize=9)
        ax.set_xticks(range(n), [t.replace("_", "\n") for t in kinds], fontsize=7)
        ax.set_yticks(range(kept.size(0)))
        ax.set_ylabel("block")
    fig.suptitle(f"{summary['method']}: kept modules (colour: fraction of units) per size",
                 fontsize=10)
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
