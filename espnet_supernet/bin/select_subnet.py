#!/usr/bin/env python3
"""Pick the best subnet of a trained supernet that fits a deployment budget, and export it.

Usage:
    python -m espnet_supernet.bin.select_subnet --exp exp/asr_x --max_params 10M
    python -m espnet_supernet.bin.select_subnet --exp exp/asr_x --max_flops 0.25G
    python -m espnet_supernet.bin.select_subnet --exp exp/asr_x --max_latency_ms 40 --threads 2

Budgets: ``--max_params`` (parameters of the deployed model), ``--max_flops`` (encoder
FLOPs per second of audio, the cost model of ``subnet_report``), ``--max_latency_ms``
(encoder + CTC greedy on a fixed 10 s input, median of repeated runs measured HERE with
``--threads`` threads, cached per machine in ``<exp>/latency_<machine>.json``). Absolute
numbers take K/M/G suffixes; a number <= 1 is a fraction of the full model.

Every size is listed with its parameters, FLOPs and latency measured here (FLOPs alone
predict CPU latency badly). Among the trained sizes that fit, the one with the lowest dev WER (then CER; from stage 13's
``score_summary.jsonl``) wins. An OrthoSoftmax supernet can realise any budget: its units
are nested in one learned order, so the largest prefix of that order that fits is selected
(it contains every trained size that fits). The choice is exported like
``espnet_supernet.bin.export`` into ``--outdir``.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.bin.export import build_from_config, export_model, load_supernet
from espnet_supernet.bin.subnet_report import subnet_report
from espnet_supernet.data.scoring import score_files
from espnet_supernet.export.latency import LatencyTable, file_key
from espnet_supernet.export.subnet_export import export_subnet
from espnet_supernet.nets.subnet_cost import flops_table, params_table
from espnet_supernet.selection.ortho_softmax import OrthoSoftmaxSelection, parse_budget
from espnet2.utils.types import str2bool

CRITERIA = ("params", "flops", "latency_ms")


def dev_scores(exp: Path, dev_set: str) -> Dict[str, tuple]:
    """``{size: (WER, CER)}`` on ``dev_set`` from the experiment's score summary."""
    path = exp / "score_summary.jsonl"
    scores = {}
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["test_set"] == dev_set and Path(entry["hyp"]).exists():
                wer, cer = score_files(entry["ref"], entry["hyp"])
                scores[str(entry["size"])] = (wer.error_rate, cer.error_rate)
    return scores


def exported_factory(supernet, train_config: dict, name: str,
                     mask: Optional[List[int]] = None) -> Callable[[], torch.nn.Module]:
    """``() -> exported model`` of a subnet, built in memory (for latency measurements)."""
    def build() -> torch.nn.Module:
        result = export_subnet(supernet, train_config, name, build_from_config, mask=mask)
        model = build_from_config(result.config)
        model.load_state_dict(result.state_dict, strict=True)
        return model.eval()
    return build


class Candidates:
    """Subnets of a loaded supernet with their costs: the named sizes and, for an
    OrthoSoftmax supernet, every prefix of its learned unit order."""

    def __init__(self, supernet, train_config: dict, model_file: Path, exp: Path,
                 threads: int):
        self.supernet, self.train_config = supernet, train_config
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


def select(args: argparse.Namespace) -> dict:
    """Choose and (unless ``--export false``) export; returns the decision record."""
    given = [(c, getattr(args, f"max_{c}")) for c in CRITERIA if getattr(args, f"max_{c}")]
    if len(given) != 1:
        raise ValueError("give exactly one budget: --max_params, --max_flops or "
                         "--max_latency_ms")
    criterion, text = given[0]
    exp = args.exp
    model_file = args.asr_model_file or next(
        (exp / f for f in ("valid.loss.ave.bncal.pth", "valid.loss.ave.pth")
         if (exp / f).exists()), exp / "valid.loss.ave.pth")
    supernet, train_config = load_supernet(exp / "config.yaml", model_file)
    cands = Candidates(supernet, train_config, model_file, exp, args.threads)
    names = supernet.subnet_names
    costs = {n: cands.named_cost(n, criterion) for n in names}
    if criterion == "latency_ms" and float(text) > 1:  # plain milliseconds
        budget = float(text)
    else:
        budget = budget_value(text, costs[names[-1]])
    scores = dev_scores(exp, args.dev_set)
    fits = [n for n in names if costs[n] <= budget]
    rows = [dict(subnet=n, cost=costs[n], fits=n in fits, dev_wer_cer=scores.get(n),
                 params=cands.named_cost(n, "params"),
                 gflops_per_sec=cands.named_cost(n, "flops") / 1e9,
                 latency_ms=cands.named_cost(n, "latency_ms")) for n in names]
    print(f"{'size':>8} {'params':>9} {'GFLOPs/s':>9} {'latency':>10} {'dev WER/CER':>13}  "
          f"fits {criterion} <= {budget:.4g}")
    for row in rows:  # latency beside FLOPs: FLOPs alone predict it badly
        wer = "%.2f/%.2f" % row["dev_wer_cer"] if row["dev_wer_cer"] else "not scored"
        print(f"{row['subnet']:>8} {row['params'] / 1e6:8.2f}M {row['gflops_per_sec']:9.3f} "
              f"{row['latency_ms']:7.1f} ms {wer:>13}  {'yes' if row['fits'] else 'no'}")
    choice, mask = None, None
    if cands.order is not None:
        k = cands.largest_prefix(criterion, budget)
        if k is not None:
            mask = cands.prefix_mask(k)
            choice = next((n for n in names if supernet.encoder.layout.as_units(mask)
                           == supernet.encoder.subnet_mask(n)), None)
            label = choice or f"{criterion}{text}"
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
    record = dict(criterion=criterion, budget=budget, selected=label, candidates=rows)
    print(f"selected subnet {label} for {criterion} <= {budget:.4g}")
    if args.export:
        outdir = args.outdir or exp / "export" / f"select_{criterion}_{text}"
        record["export"] = export_model(
            supernet, train_config, outdir, label,
            mask=None if choice is not None else mask,
            pack_zip=True, onnx=args.onnx,
            source={"config": str(exp / "config.yaml"), "model": str(model_file)})
        (outdir / "selection.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"exported to {outdir}")
    return record


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True,
                        help="the supernet's experiment directory (config.yaml, weights, "
                        "score_summary.jsonl)")
    parser.add_argument("--asr_model_file", type=Path, default=None,
                        help="default: valid.loss.ave.bncal.pth, else valid.loss.ave.pth")
    parser.add_argument("--max_params", default=None, help="e.g. 10M, or 0.5 (fraction)")
    parser.add_argument("--max_flops", default=None,
                        help="encoder FLOPs per second of audio, e.g. 1.2G")
    parser.add_argument("--max_latency_ms", default=None,
                        help="milliseconds for 10 s of audio on this machine")
    parser.add_argument("--threads", type=int, default=2, help="threads for --max_latency_ms")
    parser.add_argument("--dev_set", default="dev_clean")
    parser.add_argument("--outdir", type=Path, default=None,
                        help="default: <exp>/export/select_<criterion>_<budget>")
    parser.add_argument("--export", type=str2bool, default=True)
    parser.add_argument("--onnx", type=str2bool, default=True)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Select (and export) one subnet."""
    run_cli("select_subnet", get_parser(), cmd, select, (FileNotFoundError, TypeError, ValueError))

if __name__ == "__main__":
    main()
