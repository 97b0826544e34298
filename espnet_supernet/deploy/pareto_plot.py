"""WER vs parameters and vs measured CPU latency of the exported sizes (``pareto.png``)."""

from pathlib import Path
from typing import Dict, List


def pareto_plot(rows: List[dict], wer13: Dict[tuple, float], test_set: str, path: Path) -> None:
    """WER vs params and WER vs measured latency, one point per size (fp32 and int8)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "params", "parameters (M)"),
                           (axes[1], "latency_ms", "CPU latency, 10 s input (ms)")):
        for variant, marker in (("fp32", "o"), ("int8", "^")):
            xs, ys = [], []
            for r in rows:
                wer = wer13.get((r["size"], test_set), r["greedy"][test_set]["fp32"])
                if variant == "int8":
                    wer += r["greedy"][test_set]["int8"] - r["greedy"][test_set]["fp32"]
                x = r[key] / 1e6 if key == "params" else r[
                    "latency_ms" if variant == "fp32" else "int8_latency_ms"]
                if key == "params" and variant == "int8":
                    continue
                xs.append(x)
                ys.append(wer)
                ax.annotate(r["size"], (x, wer), textcoords="offset points", xytext=(4, 4))
            if xs:
                ax.plot(xs, ys, marker=marker, label=variant)
        ax.set_xlabel(label)
        ax.set_ylabel(f"WER {test_set} (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("One supernet, every size: WER vs size and vs latency")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
