#!/usr/bin/env python3
"""Render the figures of README.md, docs/*.md and bench/README.md from committed result files.

Usage:
    tools/docs.sh            # rewrite every rendered block in place
    tools/docs.sh --check    # exit 1 (with a diff) when a committed doc differs from its render

A doc marks what this script writes; everything else in it is prose:

    <!-- table:NAME -->            a table rendered by the function registered as NAME
    ...                            (its text is replaced on every render)
    <!-- /table -->

    <!-- value:FILE KEY.PATH FORMAT -->0.559<!-- /value -->
                                   one number from a JSON file (KEY.PATH: dot-separated keys,
                                   FORMAT: a %-format), for a figure in a sentence

Sources (each a file that a script wrote, never edited by hand):
- ``bench/results/*.json``: the benchmarks under ``bench/``;
- ``egs2/librispeech/supernet/results/<exp>/{training,scores,deploy}.json``: a recipe run's
  record (``espnet_supernet.bin.publish_run``, stages 13-14);
- ``egs2/librispeech/supernet/RESULTS.md``: stage 13's WER / CER of every experiment
  (``espnet_supernet.bin.score``), for the runs recorded before run records existed.
"""

import argparse
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from espnet_supernet.data.alone_comparison import comparison_markdown, comparisons  # noqa: E402
from espnet_supernet.data.scoring import read_results_md, size_sort_key  # noqa: E402

RECIPE = Path("egs2/librispeech/supernet")
RUNS = RECIPE / "results"
TABLE = re.compile(r"(<!-- table:(?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
VALUE = re.compile(r"(<!-- value:(?P<file>\S+) (?P<key>\S+) (?P<fmt>%\S+) -->)(?P<body>.*?)"
                   r"(<!-- /value -->)")
TABLES: Dict[str, Callable[[], str]] = {}
DEMO = "asr_train_supernet_conformer_demo"


def table(name: str) -> Callable[[Callable[[], str]], Callable[[], str]]:
    """Register a table renderer under ``name``."""

    def register(fn: Callable[[], str]) -> Callable[[], str]:
        TABLES[name] = fn
        return fn

    return register


def load(rel: Path | str) -> dict:
    """A committed JSON file (path relative to the repository)."""
    path = ROOT / rel
    if not path.is_file():
        raise FileNotFoundError(f"{rel} is missing: run the script that writes it")
    return json.loads(path.read_text())


def lookup(data: dict, key: str):
    """``data["a"]["b"]`` for ``key="a.b"``."""
    for part in key.split("."):
        data = data[part]
    return data


def markdown(head: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A Markdown table; ``align`` gives per column ``l`` or ``r`` (default: first l, rest r)."""
    align = align or "l" + "r" * (len(head) - 1)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def source(*files: Path | str) -> str:
    return "Source: " + ", ".join(f"`{f}`" for f in files) + "."


def signed(x: float) -> str:
    return f"{x:+.1f}"


# --- recipe runs --------------------------------------------------------------------------

def results_md(path: Optional[Path] = None) -> dict:
    """``{experiment: {(size, test set): (WER, CER)}}`` of a RESULTS.md (default: the recipe's)."""
    sections = read_results_md(str(path or ROOT / RECIPE / "RESULTS.md"))
    return {title: {key: tuple(float(v) for v in cell.split(" / "))
                    for key, cell in section.cells.items()}
            for title, section in sections.items()}


def run_scores(exp: str) -> Dict[Tuple[str, str], dict]:
    """``{(size, test set): row}`` of a published run's ``scores.json``."""
    return {(r["size"], r["test_set"]): r for r in load(RUNS / exp / "scores.json")["rows"]}


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


@table("demo_sizes")
def demo_sizes() -> str:
    """Every size of the CPU demo: WER with the LM, CTC greedy WER, parameters, latency."""
    scores, deploy = run_scores(DEMO), load(RUNS / DEMO / "deploy.json")
    training = load(RUNS / DEMO / "training.json")
    decoding = next(iter(scores.values()))["decoding"]
    rows = []
    for r in deploy["rows"]:
        size, g = r["size"], r["greedy"]
        rows.append([size, f"{r['params'] / 1e6:.2f}M", f"{r['model_bytes'] / 2**20:.1f} MB",
                     f"{r['latency_ms']:.1f} ms",
                     f"{scores[size, 'dev_clean']['wer']:.1f}",
                     f"{scores[size, 'test_clean']['wer']:.1f}",
                     f"{g['dev_clean']['fp32']:.1f}", f"{g['test_clean']['fp32']:.1f}",
                     f"{g['test_clean']['int8']:.1f}"])
    head = ["size", "params", "model.pth", "latency (10 s, 2 thr.)",
            f"dev WER ({decoding})", f"test WER ({decoding})", "dev WER greedy",
            "test WER greedy", "test WER greedy int8"]
    note = (f"\n\nOne job: {training['updates']} updates, {minutes(training['train_seconds'])}"
            f" of training (wall time, on {training['machine']['cores']} CPU cores shared with "
            f"whatever else ran; recorded {training['recorded']}). "
            + source(RUNS / DEMO / "scores.json", RUNS / DEMO / "deploy.json",
                     RUNS / DEMO / "training.json"))
    return markdown(head, rows) + note


@table("early_exit_demo")
def early_exit_demo() -> str:
    """Early exit vs every fixed size of the demo config's seed-1 one job
    (``espnet_supernet.bin.early_exit_report``)."""
    rel = RUNS / f"{DEMO}_seed1" / "early_exit.json"
    record = load(rel)
    rows = []
    for row in record["rows"]:
        answered = row["answered"]
        rows.append([row["mode"], row["test_set"], f"{row['wer']:.1f}",
                     f"{row['encoder_gflops_per_sec']:.3f}", f"{row['fraction_of_largest']:.2f}",
                     "-" if answered is None else
                     ", ".join(f"{size}: {n}" for size, n in answered.items())])
    head = ["decoding (CTC greedy)", "test set", "WER", "enc GFLOPs/s", "of the largest",
            "utterances answered by size"]
    prefix = ", ".join(f"{k}: {v}" for k, v in record["prefix_blocks"].items())
    return (markdown(head, rows, "llrrrl") + f"\n\nBlocks a larger size reuses from the "
            f"smaller one: {prefix}. " + source(rel))


@table("alone_corpus")
def alone_corpus() -> str:
    """Every one-job vs each-size-alone comparison of the recipe's run records
    (``local/compare_alone.sh``), as stage 13 writes it into RESULTS.md."""
    parts = []
    for comp in comparisons(ROOT / RUNS):
        parts.append(f"**{comp.title}**\n\n{comparison_markdown(comp)}")
    if not parts:
        raise FileNotFoundError(f"{RUNS} holds no one job with alone runs: run "
                                "local/compare_alone.sh")
    return "\n".join(parts) + "\n" + source(RUNS / "*/training.json", RUNS / "*/scores.json")


# The demo's previous run (same config and seed, before this run's code changes, none of
# which changes the model's function): stage 13's RESULTS.md as committed then.
PREVIOUS_DEMO = ("14f927a", RECIPE / "RESULTS.md")


def committed_results_md(commit: str, path: Path) -> dict:
    """:func:`results_md` of ``path`` as committed in ``commit`` (read with ``git show``)."""
    import subprocess
    import tempfile

    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".md") as f:
        f.write(text)
        f.flush()
        return results_md(Path(f.name))


@table("demo_rerun")
def demo_rerun() -> str:
    """This demo run against the previous run of the same config: how much a re-run varies."""
    commit, path = PREVIOUS_DEMO
    now, before = run_scores(DEMO), committed_results_md(commit, path)[DEMO]
    decoding = next(iter(now.values()))["decoding"]
    rows = []
    for size in sorted({s for s, _ in now}, key=size_sort_key):
        row = [size]
        for dset in ("dev_clean", "test_clean"):
            a, b = now[size, dset]["wer"], before[size, dset][0]
            row += [f"{a:.1f}", f"{b:.1f}", signed(a - b)]
        rows.append(row)
    head = ["size", "dev WER, this run", "previous run", "difference", "test WER, this run",
            "previous run", "difference"]
    return markdown(head, rows) + (
        f"\n\nDecoding: {decoding}, both runs. " + source(RUNS / DEMO / "scores.json")
        + f" Previous run: `{path}` as of commit {commit}.")


def pair(cells: dict, size: str, fmt: str = "{:.1f} / {:.1f}") -> str:
    """``dev / test`` WER of ``size`` from a RESULTS.md section's cells."""
    if (size, "dev_clean") not in cells:
        return "-"
    return fmt.format(cells[size, "dev_clean"][0], cells[size, "test_clean"][0])


@table("todm_corpus")
def todm_corpus() -> str:
    """TODM: one job vs each size alone and the ablations, WER dev / test (one seed each)."""
    res, base = results_md(), "asr_train_todm_mhssm_demo"
    job = res[base]
    rows = []
    for size in sorted({s for s, _ in job}, key=size_sort_key):
        alone = res[f"{base}_alone_{size}"]
        diff = [job[size, d][0] - alone[size, d][0] for d in ("dev_clean", "test_clean")]
        rows.append([size, pair(job, size), pair(alone, size),
                     f"{signed(diff[0])} / {signed(diff[1])}",
                     pair(res[f"{base}_no_kd"], size),
                     pair(res[f"{base}_no_adaptive_dropout"], size),
                     pair(res[f"{base}_adam"], size)])
    head = ["size", "one job", "alone", "one job − alone", "no KD", "no adaptive dropout",
            "Adam"]
    return markdown(head, rows) + "\n\n" + source(RECIPE / "RESULTS.md")


@table("omni_corpus")
def omni_corpus() -> str:
    """Omni-sparsity: every level from one job vs that level pruned alone (dev / test WER)."""
    res, base = results_md(), "asr_train_supernet_conformer_demo_omni"
    job = res[base]
    rows = []
    for size in sorted({s for s, _ in job}, key=size_sort_key):
        level = int(size[2:]) / 100
        alone = res.get(f"{base}_pruned_{level}")
        diff = "-" if alone is None else " / ".join(
            signed(job[size, d][0] - alone[size, d][0]) for d in ("dev_clean", "test_clean"))
        rows.append([size, pair(job, size), "-" if alone is None else pair(alone, size), diff])
    return (markdown(["level", "one job", "pruned alone", "one job − alone"], rows)
            + "\n\n" + source(RECIPE / "RESULTS.md"))


@table("ortho_corpus")
def ortho_corpus() -> str:
    """OrthoSoftmax: test WER / CER per budget of the four selection variants."""
    res, base = results_md(), "asr_train_supernet_conformer_demo_ortho"
    rows = []
    for variant in ("layer_params", "layer_flops", "component_params", "component_flops"):
        cells = res[f"{base}_{variant}"]
        budgets = sorted({s for s, _ in cells}, key=float)
        rows.append([variant.replace("_", ", ")] + [
            f"{b}: {cells[b, 'test_clean'][0]:.1f} / {cells[b, 'test_clean'][1]:.1f}"
            for b in budgets])
    return (markdown(["granularity, criterion", "small budget", "middle", "full"], rows)
            + "\n\n" + source(RECIPE / "RESULTS.md"))


@table("selection_corpus")
def selection_corpus() -> str:
    """Learned selection (Simple-Top-k, Iterative-Zero-Out) vs the static rule, test WER / CER."""
    res = results_md()
    runs = (("static (evenly spread blocks)", "asr_train_supernet_conformer_demo_fbank80_3ep"),
            ("Simple-Top-k", "asr_train_supernet_conformer_demo_simple_topk"),
            ("Iterative-Zero-Out", "asr_train_supernet_conformer_demo_iterative_zero_out"))
    rows = [[label] + [f"{res[exp][s, 'test_clean'][0]:.1f} / {res[exp][s, 'test_clean'][1]:.1f}"
                       for s in ("8", "16", "24")] for label, exp in runs]
    return (markdown(["selection", "size 8", "size 16", "size 24"], rows)
            + "\n\n" + source(RECIPE / "RESULTS.md"))


# --- benchmarks ---------------------------------------------------------------------------

BENCH = Path("bench/results")


def supernet_bench(name: str) -> str:
    d = load(BENCH / name)
    rows = [[size, f"{s['params'] / 1e6:.2f}M", f"{s['flops_fraction']:.3f}",
             f"{s['time_fraction']:.3f}", "yes" if s["goal_met"] else "**no**"]
            for size, s in d["sizes"].items()]
    step = d["train_step"]
    note = (f"\n\n{d['config']}, {d['threads']} thread(s), batch {d['batch']} × {d['seconds']:g} s,"
            f" median of {d['repeats']} ({d['clock']} clock): full supernet / stock ESPnet "
            f"Conformer {d['full_vs_stock']:.2f} (max abs diff {d['max_abs_diff']:.1e}); front end "
            f"{d['frontend_time_fraction']:.3f} of the time at {d['frontend_flops_fraction']:.3f} "
            f"of the FLOPs; one sandwich step ({' + '.join(step['subnets'])}) "
            f"{step['sandwich_vs_separate']:.2f} of separate steps. " + source(BENCH / name))
    return markdown(["subnet", "params", "FLOPs fraction", "time fraction",
                     "time ≤ FLOPs + 0.05"], rows) + note


for _name in ("supernet_demo_components", "supernet_demo_components_1thread",
              "supernet_stock12x256", "supernet_stock12x256_components",
              "supernet_paper_components"):
    TABLES[f"bench.{_name}"] = (lambda n=_name: supernet_bench(f"{n}.json"))


@table("bench.export_demo_components")
def export_bench() -> str:
    d = load(BENCH / "export_demo_components.json")
    rows = []
    for name, s in d["subnets"].items():
        pruned = s.get("pruned_export_vs_masked")
        rows.append([name, s["encoder"], f"{s['params_fraction']:.3f}",
                     f"{s['file_fraction']:.3f}", f"{s['exported_vs_stock']:.2f}",
                     f"{s['exported_vs_masked']:.2f}", "-" if pruned is None else f"{pruned:.2f}",
                     f"{s['max_abs_difference']:.1e}"])
    head = ["subnet", "exported as", "params fraction", "file fraction", "exported / stock",
            "exported / masked", "pruned export / masked", "max abs diff"]
    return markdown(head, rows, "ll" + "r" * 6) + (
        f"\n\n{d['threads']} threads, batch {d['batch']} × {d['seconds']:g} s. "
        + source(BENCH / "export_demo_components.json"))


@table("bench.sparsity_demo")
def sparsity_bench() -> str:
    d = load(BENCH / "sparsity_demo.json")
    rows = []
    for structure in ("unstructured", "ffn_rows"):
        for level, s in d[structure].items():
            t = s.get("time_vs_stock")
            rows.append([structure, level, f"{s['nonzero_params'] / 1e6:.2f}M",
                         f"{s['file_vs_dense']:.3f}", f"{s['file_vs_expected']:.3f}",
                         f"{s['flops_fraction']:.3f}", "-" if t is None else f"{t:.2f}"])
    head = ["structure", "level", "nonzero params", "file / dense", "file / expected",
            "FLOPs fraction", "time / stock"]
    return markdown(head, rows, "ll" + "r" * 5) + "\n\n" + source(BENCH / "sparsity_demo.json")


@table("bench.todm_demo")
def todm_bench() -> str:
    d = load(BENCH / "todm_demo.json")
    rows = [[f"{size} alone", f"{ms:.0f} ms"] for size, ms in d["separate_ms"].items()]
    rows += [[f"the {len(d['separate_ms'])} alone jobs", f"{d['separate_sum_ms']:.0f} ms"],
             [f"TODM job ({d['todm_job_sizes_per_update']} sizes per update, KD)",
              f"{d['todm_job_ms']:.0f} ms ({d['todm_job_vs_separate']:.3f})"],
             ["every size in every update, KD",
              f"{d['all_sizes_ms']:.0f} ms ({d['all_sizes_vs_separate']:.3f})"],
             ["every size in every update, no KD",
              f"{d['all_sizes_no_kd_ms']:.0f} ms ({d['all_sizes_no_kd_vs_separate']:.3f})"]]
    return markdown(["one update of", "time (vs the alone jobs)"], rows) + (
        f"\n\n{d['threads']} threads, batch {d['batch']} × ≤ {d['seconds']:g} s, median of "
        f"{d['repeats']}; goal ≤ {d['goal']}. " + source(BENCH / "todm_demo.json"))


@table("bench.latency_predictor_demo_ortho_softmax")
def latency_predictor_bench() -> str:
    name = "latency_predictor_demo_ortho_softmax.json"
    d = load(BENCH / name)
    rows = []
    for dtype, p in d["predictor"].items():
        f = d["flops_fraction"].get(dtype, {})
        rows.append([dtype, p["measurements"],
                     f"{100 * p['median_abs_error']:.1f} %", f"{100 * p['p90_abs_error']:.1f} %",
                     f"{100 * p['within_10pct']:.0f} %",
                     f"{100 * f['median_abs_error']:.1f} %" if f else "-",
                     f"{100 * f['within_10pct']:.0f} %" if f else "-"])
    head = ["dtype", "held-out measurements", "predictor: median abs. error", "p90",
            "within 10 %", "FLOPs fraction: median abs. error", "within 10 %"]
    lengths = " and ".join(f"{s:g}" for s in d["lengths"])
    return markdown(head, rows, "lr" + "r" * 5) + (
        f"\n\n{d['num_random']} random subnets profiled, every named size and "
        f"{d['validate']} other random subnets checked; {lengths} s inputs, batch 1, "
        f"{d['threads']} threads, median of {d['repeats']}; goal: {d['goal']}. "
        + source(BENCH / name))


def elastic_frontend_bench(name: str) -> str:
    d = load(BENCH / name)
    rows = [[str(r["frontend_channels"]) + (" (all)" if r["frontend_channels"] ==
                                              d["full_channels"] else ""),
             f"{r['size_flops_fraction']:.3f}", f"{r['size_time_fraction']:.3f}",
             f"{r['frontend_flops_fraction']:.3f}", f"{r['frontend_time_fraction']:.3f}",
             "yes" if r["goal_met"] else "**no**"]
            for r in d["widths"].values()]
    head = ["front-end channels", f"size {d['size']}: FLOPs fraction", "time fraction",
            "front end: FLOPs fraction", "time fraction", "time ≤ 0.25"]
    return markdown(head, rows, "lrrrrl") + (
        f"\n\n{d['config']}, size {d['size']} ({d['size_modules']} modules), fractions of "
        f"the full encoder (all blocks, all channels); {d['threads']} thread(s), batch "
        f"{d['batch']} × {d['seconds']:g} s, median of {d['repeats']}; full supernet / "
        f"stock ESPnet Conformer {d['full_vs_stock']:.2f} (max abs diff "
        f"{d['max_abs_diff']:.1e}). " + source(BENCH / name))


for _name in ("elastic_frontend_stock12x256", "elastic_frontend_demo"):
    TABLES[f"bench.{_name}"] = (lambda n=_name: elastic_frontend_bench(f"{n}.json"))


@table("bench.pruned_rnnt_paper")
def pruned_rnnt_bench() -> str:
    d = load(BENCH / "pruned_rnnt_paper.json")
    gb, rows = 1e9, []
    for loss, runs in d["runs"].items():
        proj = d["projection"][loss]
        for r in runs:
            rows.append([loss, r["batch"], f"{r['frames']} × {r['max_tokens'] + 1}",
                         f"{r['update_ms'] / 1000:.1f} s", f"{r['step_peak'] / gb:.2f} GB",
                         f"{proj['bytes_per_utterance'] / gb:.2f} GB", proj["max_batch"]])
    head = ["RNN-T loss", "batch", "T × (U + 1)", "update", "peak memory of the update",
            "per utterance", f"largest batch, {d['gpu_gb']:.0f} GB GPU"]
    return markdown(head, rows, "lr" + "r" * 5) + (
        f"\n\n`{d['config']}`, vocabulary {d['vocab']}, utterances ≤ {d['seconds']:g} s, "
        f"{d['tokens_per_second']:g} tokens/s, {d['threads']} threads, median of "
        f"{d['repeats']} after {d['warmup']} warm-up; at batch {d['at_batch']} the pruned "
        f"update takes {d['pruned_vs_full_step_peak']:.3f} of the full one's memory and "
        f"{d['pruned_vs_full_time']:.3f} of its time. The config's `batch_bins` is about "
        f"{d['paper_batch_per_gpu']:.0f} such utterances per GPU on 4 GPUs. "
        + source(BENCH / "pruned_rnnt_paper.json"))


@table("bench.bn_stats")
def bn_bench() -> str:
    rows = []
    for name, label in (("bn_stats_demo_uncalibrated.json", "from training"),
                        ("bn_stats_demo.json", "re-estimated")):
        d = load(BENCH / name)
        for size in sorted(d["per_size"], key=size_sort_key):
            p, s = d["per_size"][size], d["shared"][size]
            rows.append([label, size, f"{p['loss']:.2f} / {s['loss']:.2f}",
                         f"{100 * p['cer_ctc']:.1f} / {100 * s['cer_ctc']:.1f}"])
    return markdown(["per-size statistics", "size", "dev loss: per size / shared",
                     "greedy CER %: per size / shared"], rows, "llrr") + "\n\n" + source(
        BENCH / "bn_stats_demo_uncalibrated.json", BENCH / "bn_stats_demo.json")


# --- rendering ----------------------------------------------------------------------------

def doc_files() -> List[Path]:
    return [ROOT / "README.md", ROOT / "bench" / "README.md",
            *sorted((ROOT / "docs").glob("*.md"))]


def render(text: str, where: str) -> str:
    """``text`` with every table and value block re-rendered."""

    def one_table(m: re.Match) -> str:
        name = m["name"]
        if name not in TABLES:
            raise KeyError(f"{where}: unknown table '{name}' (known: {', '.join(sorted(TABLES))})")
        return m.group(1) + TABLES[name]().rstrip("\n") + "\n" + m.group(4)

    def one_value(m: re.Match) -> str:
        return m.group(1) + (m["fmt"] % lookup(load(m["file"]), m["key"])) + m.group(6)

    return VALUE.sub(one_value, TABLE.sub(one_table, text))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="only compare; exit 1 when a doc differs from its render")
    parser.add_argument("files", nargs="*", type=Path, help="docs (default: every doc)")
    args = parser.parse_args(argv)
    stale = 0
    for path in [p.resolve() for p in args.files] or doc_files():
        where = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        text = path.read_text()
        try:
            new = render(text, where)
        except (KeyError, FileNotFoundError) as error:
            print(f"docs: {error}", file=sys.stderr)
            return 2
        if new == text:
            continue
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(True), new.splitlines(True), f"{where} (committed)",
                f"{where} (rendered)"))
        else:
            path.write_text(new)
            print(f"docs: rendered {where}")
    if stale:
        print(f"docs: {stale} doc(s) differ from what tools/docs.sh renders from the result "
              "files: run tools/docs.sh (never edit a rendered figure by hand)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
