"""Runs that differ in a few settings, side by side, from their committed run records.

An option study (e.g. Simple-Top-k's ``masked_modules: skip`` vs ``compute``) trains the
same config a few times with one setting changed. This reads each run's
``results/<exp>/{training,scores}.json`` (``espnet_supernet.data.run_record``) and puts
together what the study asks: the settings that differ, the time per update (over all
epochs and over the selection epochs alone), and per size the modules kept, the encoder
parameters and the WER of every test set. The runs must share their budget (updates) and
their decoding, or the comparison is refused.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence


def _flat(settings: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _load(results_dir: Path, experiment: str, part: str) -> Dict[str, Any]:
    path = results_dir / experiment / f"{part}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run stages 11-13 for {experiment} "
                                "(stage 13 writes the record)")
    return json.loads(path.read_text())


def _seconds_per_update(epochs: List[Dict[str, Any]]) -> Optional[float]:
    if not epochs:
        return None
    start = 0
    seconds = updates = 0.0
    for epoch in epochs:
        seconds += epoch["train_seconds"] or 0.0
        updates += epoch["updates"] - start
        start = epoch["updates"]
    return round(seconds / updates, 4) if updates else None


def compare_runs(results_dir: Path, experiments: Sequence[str]) -> Dict[str, Any]:
    """The runs' differing settings, time per update and per-size results.

    Args:
        results_dir: The recipe's ``results/`` directory.
        experiments: Two or more experiment names (``asr_<tag>``) with records there.

    Returns:
        ``{"differs": [setting keys], "updates", "decoding", "runs": [{"experiment",
        "settings": {key: value of each differing key}, "seconds_per_update",
        "selection_seconds_per_update", "sizes": {name: {"kept", "encoder_params",
        "wer": {test set: %}}}}], "kept_in_common": {size: {"a|b": n}}}``.

    Raises:
        FileNotFoundError: a record is missing.
        ValueError: fewer than two runs, or runs of different updates or decoding.
    """
    if len(experiments) < 2:
        raise ValueError("compare at least two runs (--runs A B ...)")
    training = {e: _load(results_dir, e, "training") for e in experiments}
    scores = {e: _load(results_dir, e, "scores") for e in experiments}
    updates = {e: rec["updates"] for e, rec in training.items()}
    if len(set(updates.values())) > 1:
        raise ValueError(f"the runs trained different numbers of updates {updates}: an "
                         "option study compares equal budgets; retrain with the same "
                         "--max_epoch / --num_iters_per_epoch")
    decoding = {e: sorted({(r["decoding"], r["lm"]) for r in s["rows"]})
                for e, s in scores.items()}
    if len({json.dumps(d) for d in decoding.values()}) > 1:
        raise ValueError(f"the runs were decoded differently {decoding}: re-run stages "
                         "12-13 with the same --inference_config and --use_lm")
    flat = {e: _flat(rec["settings"]) for e, rec in training.items()}
    keys = sorted(set().union(*flat.values()))
    differs = [k for k in keys if len({json.dumps(f.get(k)) for f in flat.values()}) > 1]

    runs = []
    for e in experiments:
        rec = training[e]
        selection_epochs = flat[e].get("selection_conf.selection_epochs")
        sizes: Dict[str, Dict[str, Any]] = {}
        for row in scores[e]["rows"]:
            size = sizes.setdefault(row["size"], dict(
                kept=rec.get("subnets", {}).get(row["size"], {}).get("kept"),
                encoder_params=row["encoder_params"], wer={}))
            size["wer"][row["test_set"]] = row["wer"]
        runs.append(dict(
            experiment=e, settings={k: flat[e].get(k) for k in differs},
            seconds_per_update=_seconds_per_update(rec["epochs"]),
            selection_seconds_per_update=(
                _seconds_per_update(rec["epochs"][:selection_epochs])
                if selection_epochs else None),
            sizes=sizes))

    in_common: Dict[str, Dict[str, int]] = {}
    for i, a in enumerate(runs):
        for b in runs[i + 1:]:
            for name, row in a["sizes"].items():
                other = b["sizes"].get(name, {}).get("kept")
                if row["kept"] is not None and other is not None:
                    in_common.setdefault(name, {})[f"{a['experiment']}|{b['experiment']}"] = \
                        len(set(row["kept"]) & set(other))
    return dict(differs=differs, updates=next(iter(updates.values())),
                decoding=[list(d) for d in next(iter(decoding.values()))], runs=runs,
                kept_in_common=in_common)


def comparison_markdown(comparison: Dict[str, Any], title: str) -> str:
    """The comparison as Markdown: one row per run, then one table per size."""
    runs, differs = comparison["runs"], comparison["differs"]
    decoding = ", ".join(f"{d}{' + LM' if lm else ''}" for d, lm in comparison["decoding"])
    lines = [f"## {title}", "",
             f"Equal budget: {comparison['updates']} updates each, decoded with {decoding}.", "",
             "| run | " + " | ".join(differs) + " | s / update | s / update (selection) |",
             "|---|" + "---|" * len(differs) + "---|---|"]
    for run in runs:
        lines.append(f"| {run['experiment']} | "
                     + " | ".join(str(run["settings"][k]) for k in differs)
                     + f" | {run['seconds_per_update']} | {run['selection_seconds_per_update']} |")
    sets = sorted({s for run in runs for size in run["sizes"].values() for s in size["wer"]})
    for name in sorted({n for run in runs for n in run["sizes"]}, key=_size_order):
        lines += ["", f"Size {name}:", "",
                  "| run | encoder params | " + " | ".join(f"{s} WER" for s in sets)
                  + " | kept modules |", "|---|---|" + "---|" * len(sets) + "---|"]
        for run in runs:
            size = run["sizes"].get(name)
            if size is None:
                continue
            kept = ", ".join(size["kept"]) if size["kept"] is not None else "-"
            lines.append(f"| {run['experiment']} | {size['encoder_params']:,} | "
                         + " | ".join(f"{size['wer'].get(s, float('nan')):.1f}" for s in sets)
                         + f" | {kept} |")
        for pair, count in comparison["kept_in_common"].get(name, {}).items():
            lines.append(f"\nModules kept by both {pair.replace('|', ' and ')}: {count}.")
    return "\n".join(lines) + "\n"


def _size_order(name: str) -> Any:
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)
