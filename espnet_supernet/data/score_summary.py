"""Stage 13's ``score_summary.jsonl``: one JSON object per decoded size and test set.

Each line names the size, the test set, the reference and hypothesis files and the size's
costs (see ``espnet_supernet.bin.score``). ``score_summary`` scores every entry (for
RESULTS.md); ``dev_scores`` and ``stage13_wer`` read the WER of an experiment's summary
for budget selection and the deployment table.
"""

import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Tuple

from espnet_supernet.data.scoring import ResultRow, score_files, write_result

SUMMARY_KEYS = (
    "size",
    "test_set",
    "ref",
    "hyp",
    "encoder_params",
    "total_params",
    "encoder_gflops_per_sec",
)


def score_summary(path: str) -> List[ResultRow]:
    """Scores every entry of a summary file and writes each entry's result.txt.

    Args:
        path: The JSON-lines file.

    Returns:
        One row per entry.

    Raises:
        ValueError: On a malformed entry or an empty reference transcript.
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
    for lineno, line in lines:
        where = f"{path}:{lineno}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not JSON: {e}") from e
        absent = [k for k in SUMMARY_KEYS if k not in entry]
        if absent:
            raise ValueError(f"{where}: missing {', '.join(absent)}")
        wer, cer = score_files(entry["ref"], entry["hyp"])
        out = entry.get("out") or os.path.join(os.path.dirname(entry["hyp"]), "score")
        logging.info("%s: %s", where, write_result(out, entry["ref"], entry["hyp"], wer, cer))
        rows.append(
            ResultRow(
                size=str(entry["size"]),
                test_set=str(entry["test_set"]),
                wer=wer,
                cer=cer,
                encoder_params=int(entry["encoder_params"]),
                total_params=int(entry["total_params"]),
                encoder_gflops_per_sec=float(entry["encoder_gflops_per_sec"]),
            )
        )
    if not rows:
        raise ValueError(f"{path}: no entries")
    return rows


def dev_scores(exp: Path, dev_set: str) -> Dict[str, Tuple[float, float]]:
    """``{size: (WER, CER)}`` on ``dev_set`` from the experiment's score summary (entries
    whose hypothesis file is gone are skipped; no summary: empty)."""
    path = exp / "score_summary.jsonl"
    scores = {}
    if path.exists():
        for line in path.read_text().splitlines():
            entry = json.loads(line)
            if entry["test_set"] == dev_set and Path(entry["hyp"]).exists():
                wer, cer = score_files(entry["ref"], entry["hyp"])
                scores[str(entry["size"])] = (wer.error_rate, cer.error_rate)
    return scores


def stage13_wer(exp: Path) -> Dict[Tuple[str, str], float]:
    """``{(size, test set): WER}`` of stage 13 (the recipe's decoding config)."""
    path, wer = exp / "score_summary.jsonl", {}
    if path.exists():
        for line in path.read_text().splitlines():
            e = json.loads(line)
            if Path(e["hyp"]).exists():
                wer[(str(e["size"]), e["test_set"])] = score_files(e["ref"], e["hyp"])[0].error_rate
    return wer
