"""One supernet job vs every size trained alone, from the recipe's run records.

The claim of Dynamic Encoder Size (Xu et al. 2024) and OrthoSoftmax (Xu et al. 2025):
with the same number of updates, one supernet job gives every size on par with or better
than that size trained alone. ``local/compare_alone.sh`` trains both halves for several
seeds (the alone runs with ``model_conf.train_only``); stage 13 publishes each run's record
(``data/run_record.py``) and this module groups the records into comparisons:

- the one-job runs of a comparison have equal settings apart from ``seed``; an alone run
  (``model_conf.train_only``) belongs to every comparison whose settings equal its own
  apart from the seed, the config file's name and the sandwich-only ``model_conf`` keys
  that ``train_only`` ignores (``SANDWICH_ONLY``): one set of alone runs serves every
  sandwich variant (warm-up, weights, KD) of the same encoder, data and budget;
- an Omni-sparsity one job's levels (``sp30`` ...) are its sizes; a level's alone run is
  the same config with that one level (``sparsity_conf.levels: [0.3]``, what
  ``local/compare_alone.sh`` runs for such a config: dense training, gradual pruning to the
  level, same updates), so the list of levels is left out of the settings compared;
- a learned selection's one job (``selection``: Simple-Top-k, Iterative-Zero-Out,
  OrthoSoftmax) has no size to train alone before training, so its alone runs are the static
  config's with equal settings apart from the selection (``SELECTION_ONLY``); each learned
  size is paired with the alone size of the same name (a module count) or else the one of
  nearest encoder cost (FLOPs, or parameters for ``criterion: params``), as the papers
  compare a learned size with the model of that size trained from scratch;
- better, a learned size is compared with its own subnet trained alone: the alone runs of
  ``data/alone_config.py``'s config (``selection: static`` with the learned masks of the
  one job of the same seed in ``encoder_conf.subnet_masks``), paired by name and seed; a
  run whose subnet's parameter count differs from the one job's of its seed is not its
  own subnet and is left out (with a warning). Both comparisons are written when both
  kinds of alone runs exist;
- a comparison needs equal budgets: the same updates in every run and the same decoding
  (inference config, LM or not); otherwise it is not written and the reason is logged;
- per size and test set: the one job's and the alone runs' WER, mean and range over seeds,
  and their difference (one job - alone: negative is better for the one job), mean and
  range of the per-seed differences (seeds present on both sides), and a verdict: a side
  better in every one of at least 2 seeds, else no difference claimed;
- cost: the one job's training time against the sum of the alone jobs' (means over seeds).
"""

import json
import logging
from pathlib import Path
from statistics import mean
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from espnet_supernet.data.scoring import ALONE_SECTION_PREFIX as SECTION_PREFIX
from espnet_supernet.data.scoring import size_sort_key
from espnet_supernet.sparsity.omni_sparsity import level_name


class Run(NamedTuple):
    """A published run: its record's name, settings and per-(size, test set) WER."""

    name: str
    settings: dict
    seed: int
    train_only: Optional[str]
    updates: int
    train_seconds: float
    decoding: Tuple[str, bool]
    wer: Dict[Tuple[str, str], float]
    cost: Dict[str, Tuple[float, float]]  # size -> (encoder params, encoder GFLOPs/s)


class Comparison(NamedTuple):
    """The one job's runs and the alone runs of one config, by seed."""

    title: str
    onejob: Dict[int, Run]
    alone: Dict[str, Dict[int, Run]]  # alone size -> seed -> run
    pairs: Dict[str, str]  # one job's size -> the alone size it is compared with
    learned: bool = False  # the one job learned its sizes
    own_masks: bool = False  # learned: alone runs of its own masks (else the static sizes)


def read_run(record: Path) -> Optional[Run]:
    """The run in ``record`` (``training.json`` and ``scores.json``), None if either is
    missing (a run not trained here, or not scored yet)."""
    training, scores = record / "training.json", record / "scores.json"
    if not (training.is_file() and scores.is_file()):
        return None
    train = json.loads(training.read_text())
    rows = json.loads(scores.read_text())["rows"]
    settings = train["settings"]
    only = (settings.get("model_conf") or {}).get("train_only")
    if only is None:
        only = single_level(settings)
    decodings = {(r.get("decoding"), bool(r.get("lm"))) for r in rows}
    if len(decodings) != 1:
        logging.warning(f"{record}: several decodings in scores.json; skipped")
        return None
    return Run(record.name, settings, int(settings.get("seed") or 0),
               None if only is None else str(only), int(train["updates"]),
               float(train["train_seconds"]), decodings.pop(),
               {(str(r["size"]), r["test_set"]): float(r["wer"]) for r in rows},
               {str(r["size"]): (float(r.get("encoder_params") or 0),
                                 float(r.get("encoder_gflops_per_sec") or 0)) for r in rows})


# model_conf keys of the sandwich rule that a train_only run ignores (both CTC and TODM)
SANDWICH_ONLY = ("max_weight", "min_weight", "random_weight", "num_random",
                 "inplace_kd_weight", "kd_weight", "kd_divergence", "kd_alpha_range",
                 "kd_iw_clip", "sandwich_seed", "stochastic_depth_rate", "stochastic_depth_mode",
                 "largest_warmup_steps", "adaptive_dropout", "subnet_weighting")


# what a learned selection adds to the static config: the method and the units it can prune
# (with every unit on, chunked FFNs and prunable heads compute what the plain modules do)
SELECTION_ONLY = ("selection", "selection_conf")
SELECTION_ONLY_ENCODER = ("subnet_sizes", "subnet_rule", "subnet_names", "subnet_masks",
                          "ffn_chunks", "prune_heads", "adaptive_ffn_dropout")


def single_level(settings: dict) -> Optional[str]:
    """The level name of an Omni-sparsity run trained for one level (a level alone), else
    None."""
    levels = (settings.get("sparsity_conf") or {}).get("levels")
    if settings.get("sparsity") != "omni" or levels is None or len(levels) != 1:
        return None
    return level_name(float(levels[0]))


def has_masks(settings: dict) -> bool:
    """True for a run whose sizes are explicit masks (e.g. a learned subnet alone)."""
    return bool((settings.get("encoder_conf") or {}).get("subnet_masks"))


def _key(settings: dict, drop_config: bool, drop_model: Sequence[str],
         drop_selection: bool = False) -> str:
    plain = {k: v for k, v in settings.items()
             if k != "seed" and not (drop_config and k == "config")
             and not (drop_selection and k in SELECTION_ONLY)}
    plain["model_conf"] = {k: v for k, v in (settings.get("model_conf") or {}).items()
                           if k != "train_only" and k not in drop_model}
    if drop_config and "sparsity_conf" in settings:  # a level alone vs the job of all levels
        plain["sparsity_conf"] = {k: v for k, v in settings["sparsity_conf"].items()
                                  if k != "levels"}
    if drop_selection:
        plain["encoder_conf"] = {k: v for k, v in (settings.get("encoder_conf") or {}).items()
                                 if k not in SELECTION_ONLY_ENCODER}
    return json.dumps(plain, sort_keys=True)


def is_learned(settings: dict) -> bool:
    """True for a learned selection's run (its sizes are found in training)."""
    return settings.get("selection") not in (None, "none", "static")


def onejob_key(settings: dict) -> str:
    """Settings without the seed: equal for the one-job runs of a comparison."""
    return _key(settings, False, ())


def alone_key(settings: dict, learned: bool = False) -> str:
    """Settings without the seed, the config's name and what ``train_only`` ignores (and,
    for a learned selection's comparison, without the selection)."""
    return _key(settings, True, SANDWICH_ONLY, learned)


def pair_sizes(onejob: Sequence[Run], alone: Dict[str, Dict[int, Run]],
               criterion: str) -> Dict[str, str]:
    """One job's size -> alone size: the same name, else the nearest encoder cost (mean
    over the one job's seeds: a learned size's cost varies a little with the seed)."""
    index = 0 if criterion == "params" else 1

    def cost(runs: Sequence[Run], size: str) -> float:
        return mean(r.cost[size][index] for r in runs if size in r.cost)

    alone_cost = {size: cost(list(seeds.values()), size) for size, seeds in alone.items()}
    alone_cost = {size: c for size, c in alone_cost.items() if c > 0}  # 0: not recorded
    pairs = {}
    for size in sorted({s for r in onejob for s in r.cost}, key=size_sort_key):
        if size in alone:
            pairs[size] = size
        elif alone_cost:
            mine = cost(onejob, size)
            pairs[size] = min(alone_cost, key=lambda a: (abs(alone_cost[a] - mine),
                                                         size_sort_key(a)))
    return pairs


def _own_subnet_runs(onejob: Dict[int, Run], alone: Sequence[Run]) -> List[Run]:
    """The alone runs that trained the learned subnet of the one job of their seed (same
    name, same encoder parameter count)."""
    own = []
    for r in alone:
        one = onejob.get(r.seed)
        if not any(r.train_only in o.cost for o in onejob.values()):
            continue  # a size this one job never learned: another config's run
        mine = one.cost.get(r.train_only) if one is not None else None
        if mine is None or r.cost.get(r.train_only, (None,))[0] != mine[0]:
            logging.warning(f"{r.name}: not the learned subnet {r.train_only} of a one-job "
                            f"run of seed {r.seed} (no such run, or another parameter "
                            "count); left out of the comparison")
            continue
        own.append(r)
    return own


def _comparison(title: str, onejob: List[Run], alone: List[Run], learned: bool,
                own_masks: bool) -> Optional[Comparison]:
    """The comparison of ``onejob`` with ``alone`` runs, None under unequal budgets."""
    budgets = {(r.updates, r.decoding) for r in onejob + alone}
    if len(budgets) > 1:
        logging.warning(f"{title}: not an equal budget, no comparison written: " +
                        "; ".join(f"{r.name}: {r.updates} updates, {r.decoding[0]}"
                                  f"{' + LM' if r.decoding[1] else ''}"
                                  for r in onejob + alone))
        return None
    by_seed: Dict[int, Run] = {}
    for r in sorted(onejob, key=lambda r: r.name):
        by_seed.setdefault(r.seed, r)  # two runs of one seed: the first by name
    if own_masks:
        alone = _own_subnet_runs(by_seed, alone)
        if not alone:
            return None
    sizes: Dict[str, Dict[int, Run]] = {}
    for r in sorted(alone, key=lambda r: r.name):
        sizes.setdefault(r.train_only, {}).setdefault(r.seed, r)
    if learned and not own_masks:
        criterion = (onejob[0].settings.get("selection_conf") or {}).get("criterion")
        pairs = pair_sizes(list(by_seed.values()), sizes, str(criterion))
    else:
        pairs = {size: size for size in sizes}
    if not pairs:  # e.g. a learned selection and static sizes without recorded costs
        return None
    return Comparison(title, by_seed, sizes, pairs, learned, own_masks)


def comparisons(results_dir: Path) -> List[Comparison]:
    """Every config in ``results_dir`` with a one-job run and at least one alone run
    under equal budgets (same updates, same decoding), titled by its config (a learned
    selection's comparison with its own subnets alone: ", each learned subnet alone")."""
    runs = [run for run in (read_run(p) for p in sorted(Path(results_dir).iterdir())
                            if p.is_dir()) if run is not None]
    groups: Dict[str, List[Run]] = {}
    for run in runs:
        if run.train_only is None:
            groups.setdefault(onejob_key(run.settings), []).append(run)
    found = []
    for onejob in groups.values():
        model_conf = onejob[0].settings.get("model_conf") or {}
        if int(model_conf.get("largest_warmup_steps") or 0) >= onejob[0].updates:
            continue  # only the largest size ever trained: not a supernet job
        learned = is_learned(onejob[0].settings)
        key = alone_key(onejob[0].settings, learned)
        alone = [r for r in runs if r.train_only is not None and not is_learned(r.settings)
                 and alone_key(r.settings, learned) == key]
        title = str(onejob[0].settings.get("config"))
        kinds = [(title, [r for r in alone if not (learned and has_masks(r.settings))], False)]
        if learned:
            kinds.append((f"{title}, each learned subnet alone",
                          [r for r in alone if has_masks(r.settings)], True))
        for kind_title, kind_alone, own in kinds:
            comp = _comparison(kind_title, onejob, kind_alone, learned, own) if kind_alone \
                else None
            if comp is not None:
                found.append(comp)
    titles = [c.title for c in found]
    found = [c._replace(title=f"{c.title} ({min(r.name for r in c.onejob.values())})")
             if titles.count(c.title) > 1 else c for c in found]
    return sorted(found, key=lambda c: c.title)


def _spread(values: Sequence[float]) -> str:
    """``mean [min, max]`` (or the value alone for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{mean(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def _signed_spread(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.1f}"
    return f"{mean(values):+.1f} [{min(values):+.1f}, {max(values):+.1f}]"


def verdict(diffs: Sequence[float]) -> str:
    """What the per-seed differences (one job - alone) support: a side that is better in
    every one of at least 2 seeds, else no difference claimed."""
    if len(diffs) < 2:
        return "one seed: no claim"
    if all(d < 0 for d in diffs):
        return "one job better in every seed"
    if all(d > 0 for d in diffs):
        return "alone better in every seed"
    return "mixed: within seed variation"


def _mean_cost(runs, size: str) -> Tuple[float, float]:
    costs = [r.cost[size] for r in runs if size in r.cost]
    return (mean(c[0] for c in costs), mean(c[1] for c in costs)) if costs else (0.0, 0.0)


def comparison_rows(comp: Comparison) -> List[Dict[str, object]]:
    """Per size of the one job (with a paired alone size) and test set: ``size,
    alone_size, test_set, onejob, alone`` (WER lists by seed), ``diff`` (per-seed one job
    - alone, common seeds), ``cost`` ((params, GFLOPs/s) means of the one job, alone)."""
    rows = []
    test_sets = sorted({t for r in comp.onejob.values() for _, t in r.wer})
    for size in sorted(comp.pairs, key=size_sort_key):
        alone_size = comp.pairs[size]
        for test_set in test_sets:
            one = {s: r.wer[size, test_set] for s, r in comp.onejob.items()
                   if (size, test_set) in r.wer}
            alone = {s: r.wer[alone_size, test_set] for s, r in comp.alone[alone_size].items()
                     if (alone_size, test_set) in r.wer}
            if not one or not alone:
                continue
            common = sorted(set(one) & set(alone))
            rows.append(dict(size=size, alone_size=alone_size, test_set=test_set,
                             onejob=[one[s] for s in sorted(one)],
                             alone=[alone[s] for s in sorted(alone)],
                             diff=[one[s] - alone[s] for s in common],
                             seeds=(sorted(one), sorted(alone)),
                             cost=(_mean_cost(comp.onejob.values(), size),
                                   _mean_cost(comp.alone[alone_size].values(), alone_size))))
    return rows


def comparison_markdown(comp: Comparison) -> str:
    """The comparison's budget line, WER table and training-time line (Markdown)."""
    any_run = next(iter(comp.onejob.values()))
    decoding, lm = any_run.decoding
    lines = [
        f"Same budget for every run: {any_run.updates} updates, the same data, decoding "
        f"`{decoding}`{' with the LM' if lm else ' without LM'}. WER in %, mean "
        "[min, max] over seeds; difference = one job - alone (negative: the one job is "
        "better), mean [min, max] of the per-seed differences; verdict: a side better in "
        "every one of at least 2 seeds, else none.",
        "",
        "| size | test set | one job | alone | difference | verdict | seeds (one job / alone) |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    if comp.own_masks:
        lines[0] += (" The one job learned its sizes; each is compared with its own subnet "
                     "(the learned mask of the one job of the same seed, "
                     "`espnet_supernet.bin.alone_config`) trained alone from scratch "
                     "(`model_conf.train_only`); `size` gives the encoder cost (parameters, "
                     "GFLOPs per second of audio; mean over seeds).")
    elif comp.learned:
        lines[0] += (" The one job learned its sizes; each is compared with the static size "
                     "trained alone (`model_conf.train_only`, same encoder and updates) of the "
                     "same name, else of the nearest encoder cost; `size` gives both and the "
                     "encoder cost (parameters, GFLOPs per second of audio; one job's mean "
                     "over seeds / alone).")
    for row in comparison_rows(comp):
        one_seeds, alone_seeds = row["seeds"]
        diff = _signed_spread(row["diff"]) if row["diff"] else "-"
        size = row["size"]
        if comp.own_masks:
            (p1, f1), _ = row["cost"]
            size = f"{size} ({p1 / 1e6:.2f}M, {f1:.3f})"
        elif comp.learned:
            (p1, f1), (p2, f2) = row["cost"]
            size = (f"{size} vs {row['alone_size']} ({p1 / 1e6:.2f}M / {p2 / 1e6:.2f}M, "
                    f"{f1:.3f} / {f2:.3f})")
        lines.append(f"| {size} | {row['test_set']} | {_spread(row['onejob'])} "
                     f"| {_spread(row['alone'])} | {diff} | {verdict(row['diff'])} | "
                     f"{','.join(map(str, one_seeds))} / {','.join(map(str, alone_seeds))} |")
    onejob_min = mean(r.train_seconds for r in comp.onejob.values()) / 60
    paired = sorted(set(comp.pairs.values()), key=size_sort_key)
    sums = [sum(comp.alone[size][s].train_seconds for size in paired) / 60
            for s in comp.onejob if all(s in comp.alone[size] for size in paired)]
    lines.append("")
    if sums:
        lines.append(
            f"Training time (wall, mean over seeds): one job {onejob_min:.1f} min; the "
            f"{len(paired)} alone jobs together {mean(sums):.1f} min "
            f"(one job / sum = {onejob_min / mean(sums):.2f}).")
    else:
        lines.append(f"Training time (wall, mean over seeds): one job {onejob_min:.1f} min; "
                     "no seed has every alone job yet.")
    runs = sorted([r.name for r in comp.onejob.values()] +
                  [r.name for size in paired for r in comp.alone[size].values()])
    lines += ["", "Runs (records in `results/`): " + ", ".join(f"`{n}`" for n in runs) + "."]
    return "\n".join(lines) + "\n"


def update_results_md(path: Path, results_dir: Path) -> List[str]:
    """Rewrite the comparison sections of ``path`` (RESULTS.md) from ``results_dir``:
    old ones are dropped, the current ones go after the ``Comparison`` section (before
    the experiments). Returns the titles written."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# RESULTS\n"
    head, *chunks = text.split("\n## ")
    kept = [c for c in chunks if not c.startswith(SECTION_PREFIX)]
    new = [f"{SECTION_PREFIX}{c.title}\n{comparison_markdown(c)}"
           for c in comparisons(results_dir)]
    at = next((i + 1 for i, c in enumerate(kept) if c.startswith("Comparison\n")),
              next((i + 1 for i, c in enumerate(kept) if c.startswith("Environments\n")), 0))
    chunks = kept[:at] + new + kept[at:]
    chunks = [c if c.endswith("\n") else c + "\n" for c in chunks]
    path.write_text("\n## ".join([head.rstrip("\n") + "\n"] + chunks), encoding="utf-8")
    return [c.partition("\n")[0] for c in new]
