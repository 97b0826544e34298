"""WER/CER scoring without sclite (ESPnet's asr.sh stage 13) and RESULTS.md.

References and hypotheses are Kaldi/ESPnet ``text`` files: one ``uttid
token token ...`` per line, where a line holding only the uttid is an empty
transcript. Word error rates align whitespace-separated words; character error
rates align characters, each space becoming the ``<space>`` token, like
ESPnet's ``tokenize_text --token_type char`` before sclite. Alignments come
from ``jiwer``.
"""

import dataclasses
import importlib.metadata
import logging
import os
import platform
import time
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jiwer

SPACE_SYMBOL = "<space>"


@dataclasses.dataclass(frozen=True)
class ErrorCounts:
    """Alignment error counts of a hypothesis set against its references.

    Attributes:
        n_ref: Reference tokens (words or characters).
        sub: Substituted tokens.
        dele: Deleted tokens.
        ins: Inserted tokens.
        n_sent: Reference utterances.
        n_sent_err: Utterances with at least one error.
        missing: Reference utterances without a hypothesis (scored as deletions).
    """

    n_ref: int
    sub: int
    dele: int
    ins: int
    n_sent: int
    n_sent_err: int
    missing: Tuple[str, ...] = ()

    def percent(self, count: int) -> float:
        """Returns ``count`` as a percentage of the reference tokens (0 if none)."""
        return 100.0 * count / self.n_ref if self.n_ref else 0.0

    @property
    def error_rate(self) -> float:
        """(sub + del + ins) / reference tokens, in %."""
        return self.percent(self.sub + self.dele + self.ins)

    @property
    def corr(self) -> float:
        """Correct tokens / reference tokens, in %."""
        return self.percent(self.n_ref - self.sub - self.dele)

    @property
    def sentence_error_rate(self) -> float:
        """Utterances with an error / utterances, in %."""
        return 100.0 * self.n_sent_err / self.n_sent if self.n_sent else 0.0


def read_text(path: str) -> Dict[str, str]:
    """Reads a Kaldi ``text`` file.

    Args:
        path: The file.

    Returns:
        ``uttid -> transcript`` with runs of whitespace reduced to one space
        (empty for a line holding only the uttid).

    Raises:
        ValueError: If an uttid appears twice.
    """
    texts: Dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if fields[0] in texts:
                raise ValueError(f"{path}:{lineno}: duplicate utterance {fields[0]}")
            texts[fields[0]] = " ".join(fields[1:])
    return texts


def read_test_set(dumpdir: Path, test_set: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """The ``wav.scp`` (``uttid -> path``) and ``text`` (``uttid -> transcript``) of
    ``dumpdir/<test_set>``.

    Raises:
        FileNotFoundError: either file is missing (it says to run the data stages).
    """
    wav_scp, text = Path(dumpdir) / test_set / "wav.scp", Path(dumpdir) / test_set / "text"
    for path in (wav_scp, text):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run stages 1-4 (data) first")
    return read_text(str(wav_scp)), read_text(str(text))


def word_tokens(text: str) -> List[str]:
    """Splits a transcript into words."""
    return text.split()


def char_tokens(text: str) -> List[str]:
    """Splits a transcript into characters, a space becoming ``<space>``.

    Runs of whitespace count as one space; leading and trailing whitespace is
    dropped.
    """
    return [SPACE_SYMBOL if c == " " else c for c in " ".join(text.split())]


TOKENIZERS: Dict[str, Callable[[str], List[str]]] = {
    "word": word_tokens,
    "char": char_tokens,
}


def score_pair(
    ref: Dict[str, str], hyp: Dict[str, str], unit: str = "word"
) -> ErrorCounts:
    """Aligns hypotheses with references and counts errors.

    Args:
        ref: ``uttid -> reference transcript``; every utterance is scored.
        hyp: ``uttid -> hypothesis``. A missing utterance scores as all
            deletions and is listed in ``missing``; hypotheses for utterances
            without a reference are ignored.
        unit: ``word`` (WER) or ``char`` (CER).

    Returns:
        The error counts.

    Raises:
        ValueError: On an unknown unit, no references, or an empty reference
            transcript.
    """
    if unit not in TOKENIZERS:
        raise ValueError(f"unit must be one of {sorted(TOKENIZERS)}, not {unit!r}")
    if not ref:
        raise ValueError("no reference utterances to score")
    for uttid, text in ref.items():
        if not text.split():
            raise ValueError(f"empty reference transcript for utterance {uttid}")
    missing = tuple(sorted(u for u in ref if u not in hyp))
    tokenize = TOKENIZERS[unit]
    uttids = list(ref)
    output = jiwer.process_words(
        [" ".join(tokenize(ref[u])) for u in uttids],
        [" ".join(tokenize(hyp.get(u, ""))) for u in uttids],
    )
    n_sent_err = sum(
        1 for chunks in output.alignments if any(c.type != "equal" for c in chunks)
    )
    return ErrorCounts(
        n_ref=sum(len(words) for words in output.references),
        sub=output.substitutions,
        dele=output.deletions,
        ins=output.insertions,
        n_sent=len(uttids),
        n_sent_err=n_sent_err,
        missing=missing,
    )


def score_files(ref_path: str, hyp_path: str) -> Tuple[ErrorCounts, ErrorCounts]:
    """Scores a hypothesis ``text`` file against a reference ``text`` file.

    Missing and extra hypotheses are logged as warnings.

    Args:
        ref_path: The reference file.
        hyp_path: The hypothesis file.

    Returns:
        ``(word counts, character counts)``.

    Raises:
        ValueError: As :func:`score_pair`, naming the reference file.
    """
    ref = read_text(ref_path)
    hyp = read_text(hyp_path)
    try:
        wer = score_pair(ref, hyp, "word")
    except ValueError as e:
        raise ValueError(f"{ref_path}: {e}") from e
    if wer.missing:
        logging.warning(
            "%s: %d of %d utterances have no hypothesis (scored as deletions): %s",
            hyp_path,
            len(wer.missing),
            len(ref),
            " ".join(wer.missing[:10]) + (" ..." if len(wer.missing) > 10 else ""),
        )
    extra = [u for u in hyp if u not in ref]
    if extra:
        logging.warning(
            "%s: %d hypotheses have no reference and are ignored, e.g. %s",
            hyp_path,
            len(extra),
            extra[0],
        )
    return wer, score_pair(ref, hyp, "char")


def summary_table(counts: ErrorCounts) -> str:
    """Formats counts like the SPKR/Sum/Avg lines of sclite's system summary.

    Args:
        counts: The error counts.

    Returns:
        Two table lines (header, totals); ``grep -e Avg -e SPKR`` finds them as
        in ESPnet's result.txt.
    """
    header = (
        f"| {'SPKR':<7} | {'# Snt':>6} {'# Wrd':>8} | {'Corr':>6} {'Sub':>6} "
        f"{'Del':>6} {'Ins':>6} {'Err':>6} {'S.Err':>6} |"
    )
    values = [
        counts.corr,
        counts.percent(counts.sub),
        counts.percent(counts.dele),
        counts.percent(counts.ins),
        counts.error_rate,
        counts.sentence_error_rate,
    ]
    row = f"| {'Sum/Avg':<7} | {counts.n_sent:>6} {counts.n_ref:>8} | " + " ".join(
        f"{v:>6.1f}" for v in values
    ) + " |"
    return f"{header}\n{row}"


def format_result(ref_path: str, hyp_path: str, wer: ErrorCounts, cer: ErrorCounts) -> str:
    """Formats the ``result.txt`` summary of one hypothesis file.

    Args:
        ref_path: The reference file (for the record).
        hyp_path: The hypothesis file (for the record).
        wer: Word error counts.
        cer: Character error counts.

    Returns:
        The text: WER and CER tables, the raw counts and missing utterances.
    """
    lines = [f"# ref: {ref_path}", f"# hyp: {hyp_path}"]
    for title, counts, unit in (("WER", wer, "words"), ("CER", cer, "characters")):
        lines += [
            "",
            f"## {title}",
            summary_table(counts),
            f"# {unit}: ref={counts.n_ref} sub={counts.sub} del={counts.dele} "
            f"ins={counts.ins} utterances={counts.n_sent} "
            f"with errors={counts.n_sent_err}",
        ]
    if wer.missing:
        lines += ["", f"# missing hypotheses ({len(wer.missing)}, scored as deletions):"]
        lines += [f"#   {uttid}" for uttid in wer.missing]
    return "\n".join(lines) + "\n"


def write_result(
    out_dir: str, ref_path: str, hyp_path: str, wer: ErrorCounts, cer: ErrorCounts
) -> str:
    """Writes ``<out_dir>/result.txt`` (see :func:`format_result`).

    Args:
        out_dir: The scoring directory (created).
        ref_path: The reference file.
        hyp_path: The hypothesis file.
        wer: Word error counts.
        cer: Character error counts.

    Returns:
        The path of the written file.
    """
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "result.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(format_result(ref_path, hyp_path, wer, cer))
    return path


@dataclasses.dataclass(frozen=True)
class ResultRow:
    """One model size on one test set, for RESULTS.md.

    Attributes:
        size: Model size label (e.g. ``"16"`` or ``"large"``).
        test_set: Test set name.
        wer: Word error counts.
        cer: Character error counts.
        encoder_params: Encoder parameters of this size.
        total_params: All parameters of this size.
        encoder_gflops_per_sec: Encoder GFLOPs per second of audio.
    """

    size: str
    test_set: str
    wer: ErrorCounts
    cer: ErrorCounts
    encoder_params: int
    total_params: int
    encoder_gflops_per_sec: float


def size_sort_key(size: str) -> Tuple[int, float, str]:
    """Sorts numeric sizes numerically, before the other labels (alphabetical)."""
    try:
        return (0, float(size), "")
    except ValueError:
        return (1, 0.0, size)


def _count(n: int) -> str:
    """Formats a parameter count compactly (``31.25M``, ``840.2k``, ``12``)."""
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def _package_version(name: str) -> str:
    """Returns an installed distribution's version, or ``n/a``."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "n/a"


def environment_line() -> str:
    """Describes when and with what the results were produced (one Markdown line)."""
    return (
        f"- date: `{time.strftime('%Y-%m-%d %H:%M:%S %Z')}`, "
        f"python `{platform.python_version()}`, "
        f"torch `{_package_version('torch')}`, "
        f"espnet `{_package_version('espnet')}`"
    )


def results_table(rows: Sequence[ResultRow]) -> str:
    """Formats rows as a Markdown table, sizes sorted numerically when numeric.

    Test sets keep the order of their first appearance within a size.

    Args:
        rows: The results.

    Returns:
        The table (header, separator, one line per row).
    """
    test_order: Dict[str, int] = {}
    for row in rows:
        test_order.setdefault(row.test_set, len(test_order))
    ordered = sorted(
        rows, key=lambda r: (size_sort_key(r.size), test_order[r.test_set])
    )
    lines = [
        "| size | test set | enc params | total params | enc GFLOPs/s "
        "| WER | S | D | I | words | CER |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in ordered:
        lines.append(
            f"| {r.size} | {r.test_set} | {_count(r.encoder_params)} "
            f"| {_count(r.total_params)} | {r.encoder_gflops_per_sec:.2f} "
            f"| {r.wer.error_rate:.2f} | {r.wer.sub} | {r.wer.dele} | {r.wer.ins} "
            f"| {r.wer.n_ref} | {r.cer.error_rate:.2f} |"
        )
    return "\n".join(lines)


def comparison_table(sections: Dict[str, Sequence[ResultRow]],
                     kept: Optional[Dict[str, "KeptSection"]] = None) -> str:
    """WER / CER of every size and test set side by side, one column per experiment
    (``sections`` scored now, ``kept`` as an earlier RESULTS.md had them), titles sorted
    when there are kept ones."""
    cells: Dict[Tuple[str, str], Dict[str, str]] = {}
    for title, rows in sections.items():
        for r in rows:
            cells.setdefault((r.size, r.test_set), {})[title] = (
                f"{r.wer.error_rate:.2f} / {r.cer.error_rate:.2f}"
            )
    for title, section in (kept or {}).items():
        for key, cell in section.cells.items():
            cells.setdefault(key, {})[title] = cell
    titles = sorted([*sections, *kept]) if kept else list(sections)
    lines = [
        "| size | test set | " + " | ".join(titles) + " |",
        "|---|---|" + "---:|" * len(titles),
    ]
    for (size, test_set), by_title in sorted(
        cells.items(), key=lambda kv: (size_sort_key(kv[0][0]), kv[0][1])
    ):
        values = " | ".join(by_title.get(t, "-") for t in titles)
        lines.append(f"| {size} | {test_set} | {values} |")
    return "\n".join(lines)


# title prefix of the one-job-vs-alone sections that data/alone_comparison.py writes
ALONE_SECTION_PREFIX = "One job vs each size alone: "


class KeptSection(NamedTuple):
    """An experiment's section of an earlier RESULTS.md, kept as it was written.

    Attributes:
        body: The section's text after its ``## <title>`` line.
        cells: ``{(size, test set): "WER / CER"}`` from its table.
    """

    body: str
    cells: Dict[Tuple[str, str], str]


def read_results_md(path: str) -> Dict[str, KeptSection]:
    """The experiment sections of a RESULTS.md that :func:`write_results_md` wrote.

    Returns:
        ``{experiment title: section}``, in file order (no Environments / Comparison).
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    sections: Dict[str, KeptSection] = {}
    for chunk in text.split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        if title in ("Environments", "Comparison") or title.startswith(
                ALONE_SECTION_PREFIX):  # not an experiment (data/alone_comparison.py)
            continue
        cells, header = {}, None
        for line in body.splitlines():
            if not line.startswith("|"):
                continue
            row = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if header is None:
                header = row
            elif not row[0].startswith("-"):
                col = dict(zip(header, row))
                cells[col["size"], col["test set"]] = f"{col['WER']} / {col['CER']}"
        sections[title.strip()] = KeptSection(body.rstrip("\n") + "\n", cells)
    return sections


def write_results_md(sections: Dict[str, Sequence[ResultRow]], path: str,
                     kept: Optional[Dict[str, KeptSection]] = None) -> None:
    """Writes RESULTS.md: environment, a comparison (several experiments), one table each.

    Args:
        sections: ``{experiment title: rows}``, rows one per size and test set.
        path: The output file (its directory is created).
        kept: Sections of an earlier RESULTS.md (:func:`read_results_md`) to keep as
            they were; a title in ``sections`` replaces its kept section.
    """
    kept = {t: k for t, k in (kept or {}).items() if t not in sections}
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    parts = ["# RESULTS", "", "## Environments", environment_line(), ""]
    if len(sections) + len(kept) > 1:
        parts += [
            "## Comparison",
            "WER / CER in % of every size, one column per experiment.",
            "",
            comparison_table(sections, kept),
            "",
        ]
    bodies = {
        title: "WER and CER in %; S, D, I: substituted, deleted and inserted words "
        "(counts) out of `words` reference words; enc GFLOPs/s: encoder GFLOPs "
        "per second of audio (cost model, 10 s utterance); params: see "
        "`subnets.json`.\n\n" + results_table(rows) + "\n"
        for title, rows in sections.items()
    }
    bodies.update({title: section.body for title, section in kept.items()})
    for title in (sorted(bodies) if kept else bodies):
        parts += [f"## {title}", bodies[title]]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
