"""Pick the best subnet of a trained supernet that fits a deployment budget.

Budgets are parameters of the deployed model, encoder FLOPs per second of audio (the cost
model of ``subnet_report``) or CPU latency of encoder + CTC greedy on 10 s: predicted by
this machine's latency model when ``profile_device`` wrote one (``latency_model.py``),
else measured here (``export/latency.py``). Among the trained sizes that fit, the one with the lowest dev
(WER, CER) of stage 13 wins; an OrthoSoftmax supernet can realise any budget: its units
are nested in one learned order, so the largest prefix of that order that fits is chosen.
The command line is ``espnet_supernet.bin.select_subnet``.
"""

import json
import logging
from pathlib import Path
from typing import Dict, List, Optional

import torch

from espnet_supernet.data.score_summary import dev_scores
from espnet_supernet.deploy.latency_model import (
    LatencyModel,
    default_model_path,
    exported_factory,
)
from espnet_supernet.deploy.subnet_report import subnet_report
from espnet_supernet.export.latency import LatencyTable, file_key, machine_id
from espnet_supernet.export.model_export import export_model
from espnet_supernet.export.supernet_loading import load_supernet
from espnet_supernet.nets.subnet_cost import flops_table, params_table
from espnet_supernet.selection.ortho_softmax import OrthoSoftmaxSelection, parse_budget

CRITERIA = ("params", "flops", "latency_ms")
MODEL_FILES = ("valid.loss.ave.bncal.pth", "valid.loss.ave.pth")


class Candidates:
    """Subnets of a loaded supernet with their costs: the named sizes and, for an
    OrthoSoftmax supernet, every prefix of its learned unit order."""

    def __init__(self, supernet, train_config: dict, model_file: Path, exp: Path,
                 threads: int, latency_model: Optional[LatencyModel] = None):
        self.supernet, self.train_config = supernet, train_config
        self.latency_model = latency_model
        self.report = subnet_report(supernet)
        self.rest = {n: r["total_params"] - r["encoder_params"] for n, r in self.report.items()}
        self.latency = LatencyTable(exp, threads)
        self.model_file = model_file
        selection = getattr(supernet, "selection", None)
        self.order = selection.ranking() if isinstance(selection, OrthoSoftmaxSelection) \
            else None
        if self.order is not None:
            self.granularity = selection.granularity
            encoder = supernet.encoder
            self._params, self._flops = params_table(encoder), flops_table(encoder)

    def named_cost(self, name: str, criterion: str) -> float:
        """Cost of a named size."""
        row = self.report[name]
        if criterion == "params":
            return row["total_params"]
        if criterion == "flops":
            return row["encoder_gflops_per_sec"] * 1e9
        encoder = self.supernet.encoder
        channels = encoder.frontend_channels_of(name)
        model = self.latency_model
        if model is not None and (channels is None or model.frontend_channels):
            return model.predict(encoder.subnet_mask(name), self.latency.seconds,
                                 frontend_channels=channels)
        return self.latency.get(file_key(self.model_file, f"subnet {name}"),
                                exported_factory(self.supernet, self.train_config, name))

    def prefix_mask(self, k: int) -> List[int]:
        """Mask of the first ``k`` units (modules for layer granularity) of the order."""
        mask = [0] * len(self.order)
        for unit in self.order[:k]:
            mask[unit] = 1
        return mask

    def prefix_cost(self, k: int, criterion: str) -> float:
        """Cost of the ``k``-unit prefix (deployed with the largest size's CTC head)."""
        mask = self.prefix_mask(k)
        if criterion == "params":
            return self._params.subnet(mask) + self.rest[self.supernet.subnet_names[-1]]
        if criterion == "flops":
            return self._flops.subnet(mask)
        if self.latency_model is not None:
            return self.latency_model.predict(mask, self.latency.seconds)
        return self.latency.get(
            file_key(self.model_file, f"prefix {k}"),
            exported_factory(self.supernet, self.train_config, f"prefix{k}", mask))

    def largest_prefix(self, criterion: str, budget: float) -> Optional[int]:
        """Largest k whose prefix fits (costs grow with k: binary search), or None."""
        lo, hi = 1, len(self.order)
        if self.prefix_cost(lo, criterion) > budget:
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.prefix_cost(mid, criterion) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return lo


def choose(costs: Dict[str, float], scores: Dict[str, tuple], budget: float) -> Optional[str]:
    """The size with cost <= budget and the lowest dev (WER, CER) (ties: the costlier);
    without scores the costliest that fits; None if none fits."""
    fits = [n for n, c in costs.items() if c <= budget]
    scored = [n for n in fits if n in scores]
    if scored:
        return min(scored, key=lambda n: (scores[n], -costs[n]))
    return max(fits, key=lambda n: costs[n]) if fits else None


def budget_value(text: str, full: float) -> float:
    """An absolute budget from ``10M`` / ``1.2G`` / ``40`` or a fraction of ``full``."""
    value, absolute = parse_budget(text)
    return value if absolute else value * full


def default_model_file(exp: Path) -> Path:
    """The experiment's calibrated weights if present, else its averaged ones."""
    return next((exp / f for f in MODEL_FILES if (exp / f).exists()), exp / MODEL_FILES[-1])


def select_subnet(exp: Path, criterion: str, budget_text: str,
                  model_file: Optional[Path] = None, threads: int = 2,
                  dev_set: str = "dev_clean", outdir: Optional[Path] = None,
                  export: bool = True, onnx: bool = True,
                  latency_model: Optional[str] = "auto") -> dict:
    """Choose the subnet of the experiment ``exp`` that fits the budget, print the
    candidates and (``export``) export the choice.

    Args:
        exp: the experiment directory (config.yaml, weights, score_summary.jsonl).
        criterion: one of ``CRITERIA``.
        budget_text: ``10M`` / ``1.2G`` / ``40`` (milliseconds for ``latency_ms``), or a
            number <= 1: a fraction of the full model's cost.
        model_file: the weights (default: ``default_model_file(exp)``).
        threads: threads for the latency measurements.
        dev_set: the stage 13 test set whose WER ranks the sizes that fit.
        outdir: where to export (default ``<exp>/export/select_<criterion>_<budget>``).
        export: export the choice (pack zip included) and write ``selection.json``.
        onnx: with the export, write ``encoder_ctc.onnx``.
        latency_model: for ``latency_ms``: ``auto`` predicts with this machine's
            ``<exp>/latency_model_<machine>.json`` when ``profile_device`` wrote it (else
            measures each candidate), a path predicts with that file, ``None`` / ``none``
            measures.

    Returns:
        The decision record: criterion, budget, selected, candidates (and export).
    """
    model_file = model_file or default_model_file(exp)
    supernet, train_config = load_supernet(exp / "config.yaml", model_file)
    predictor = load_latency_model(exp, threads, latency_model)
    cands = Candidates(supernet, train_config, model_file, exp, threads, predictor)
    names = supernet.subnet_names
    costs = {n: cands.named_cost(n, criterion) for n in names}
    if criterion == "latency_ms" and float(budget_text) > 1:  # plain milliseconds
        budget = float(budget_text)
    else:
        budget = budget_value(budget_text, costs[names[-1]])
    scores = dev_scores(exp, dev_set)
    fits = [n for n in names if costs[n] <= budget]
    rows = [dict(subnet=n, cost=costs[n], fits=n in fits, dev_wer_cer=scores.get(n),
                 params=cands.named_cost(n, "params"),
                 gflops_per_sec=cands.named_cost(n, "flops") / 1e9,
                 latency_ms=cands.named_cost(n, "latency_ms")) for n in names]
    print_candidates(rows, criterion, budget)
    choice, mask = None, None
    if cands.order is not None:
        k = cands.largest_prefix(criterion, budget)
        if k is not None:
            mask = cands.prefix_mask(k)
            choice = next((n for n in names if supernet.encoder.layout.as_units(mask)
                           == supernet.encoder.subnet_mask(n)), None)
            label = choice or f"{criterion}{budget_text}"
            logging.info("OrthoSoftmax: the first %d of %d %s units fit (%s %.4g)", k,
                         len(cands.order), cands.granularity, criterion,
                         cands.prefix_cost(k, criterion))
    if mask is None and fits:
        if not any(n in scores for n in fits):
            logging.warning("no dev scores in %s/score_summary.jsonl (stage 13): taking the "
                            "largest size that fits", exp)
        choice = label = choose(costs, scores, budget)
    if choice is None and mask is None:
        smallest = min(names, key=lambda n: costs[n])
        raise ValueError(
            f"no subnet fits {criterion} <= {budget:.4g}: the smallest is size {smallest} "
            f"with {costs[smallest]:.4g}; sizes: "
            + ", ".join(f"{n}={costs[n]:.4g}" for n in names))
    record = dict(criterion=criterion, budget=budget, selected=label, candidates=rows,
                  latency="measured" if predictor is None else "predicted")
    print(f"selected subnet {label} for {criterion} <= {budget:.4g}")
    if export:
        outdir = outdir or exp / "export" / f"select_{criterion}_{budget_text}"
        record["export"] = export_model(
            supernet, train_config, outdir, label,
            mask=None if choice is not None else mask,
            pack_zip=True, onnx=onnx,
            source={"config": str(exp / "config.yaml"), "model": str(model_file)})
        (outdir / "selection.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"exported to {outdir}")
    return record


def load_latency_model(exp: Path, threads: int,
                       choice: Optional[str]) -> Optional[LatencyModel]:
    """The latency model that ``choice`` names (see :func:`select_subnet`), or None.

    Raises:
        FileNotFoundError: a named file is missing.
        ValueError: it was profiled on another machine or with other threads.
    """
    if choice in (None, "none"):
        return None
    path = default_model_path(exp, threads) if choice == "auto" else Path(choice)
    if choice == "auto" and not path.is_file():
        return None
    model = LatencyModel.load(path)
    if model.threads != threads:
        raise ValueError(f"{path} was profiled with {model.threads} threads, not {threads}: "
                         f"pass --threads {model.threads} or profile again")
    if model.machine != machine_id(threads):
        raise ValueError(f"{path} was profiled on {model.machine}, this is "
                         f"{machine_id(threads)}: profile this machine (profile_device)")
    logging.info("latency: predicted by %s (profiled %s on %s)", path, model.created,
                 model.machine)
    return model


def print_candidates(rows: List[dict], criterion: str, budget: float) -> None:
    """One line per size: parameters, FLOPs, latency, dev WER/CER, whether it fits."""
    print(f"{'size':>8} {'params':>9} {'GFLOPs/s':>9} {'latency':>10} {'dev WER/CER':>13}  "
          f"fits {criterion} <= {budget:.4g}")
    for row in rows:  # latency beside FLOPs: FLOPs alone predict it badly
        wer = "%.2f/%.2f" % row["dev_wer_cer"] if row["dev_wer_cer"] else "not scored"
        print(f"{row['subnet']:>8} {row['params'] / 1e6:8.2f}M {row['gflops_per_sec']:9.3f} "
              f"{row['latency_ms']:7.1f} ms {wer:>13}  {'yes' if row['fits'] else 'no'}")
