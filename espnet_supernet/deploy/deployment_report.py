"""Deployment table of the exported sizes (recipe stage 14): size, speed and WER.

For every ``<exp>/export/size<N>/`` (written by ``espnet_supernet.bin.export``): parameters,
encoder FLOPs/s, file sizes, CPU latency (fp32 and int8, measured here and cached per
machine) and CTC greedy WER of the masked supernet, the exported fp32 model and its int8
version (the exported hypotheses must equal the supernet's). ``deployment_report`` writes
``<exp>/deploy.json``, a "Deployment" section in ``<exp>/RESULTS.md`` and
``<exp>/pareto.png``. The command line is ``espnet_supernet.bin.deploy_report``.
"""

import json
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional

import soundfile
import torch

from espnet_supernet.checkpoint import load_model
from espnet_supernet.data.score_summary import stage13_wer
from espnet_supernet.data.scoring import read_text, score_files, size_sort_key
from espnet_supernet.decode.speech2text import speech2text
from espnet_supernet.deploy.pareto_plot import pareto_plot
from espnet_supernet.export.latency import LatencyTable, file_key
from espnet_supernet.export.quantize import quantize_int8

SECTION = "## Deployment (stage 14)"
MAX_LOGP_DIFFERENCE = 1e-3  # exported vs masked supernet: rounding, not another function


def greedy_decode(s2t, wav_scp: Path, out: Path) -> Path:
    """Decode every utterance of ``wav_scp`` with ``s2t`` (CTC greedy) into ``out``."""
    lines, root = [], logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # Speech2Text logs every utterance's length
    try:
        for key, path in sorted(read_text(str(wav_scp)).items()):
            speech, _ = soundfile.read(path, dtype="float32")
            text = s2t(torch.from_numpy(speech))[0][0] or ""
            lines.append(f"{key} {text}".rstrip())
    finally:
        root.setLevel(level)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def differing_utterances(a: Path, b: Path) -> List[str]:
    """Keys whose hypotheses differ between two ``text`` files of the same utterances."""
    hyp_a, hyp_b = read_text(str(a)), read_text(str(b))
    return sorted(k for k in hyp_a.keys() | hyp_b.keys() if hyp_a.get(k) != hyp_b.get(k))


@torch.no_grad()
def unexplained_argmax_flip(model_a: torch.nn.Module, model_b: torch.nn.Module,
                            wav: str) -> Optional[str]:
    """Why two models' CTC greedy paths on ``wav`` differ, if not by floating-point rounding.

    The exported model and the masked supernet compute the same function in different
    orders (e.g. ESPnet's front end against this package's chunked one), so where the two
    best tokens of a frame are within rounding of each other their argmax may differ. If
    the largest log-posterior difference ``d`` is at most ``MAX_LOGP_DIFFERENCE``, every
    frame whose argmax differs has a top-2 margin of at most ``2 d`` in both models: a tie
    up to rounding, which is accepted.

    Returns:
        None when the paths differ only by such near ties, else what differs.
    """
    speech = torch.from_numpy(soundfile.read(wav, dtype="float32")[0])[None]
    lengths = torch.tensor([speech.shape[1]])
    logp = []
    for model in (model_a, model_b):
        enc, enc_lens = model.encode(speech, lengths)
        enc = enc[0] if isinstance(enc, tuple) else enc  # intermediate CTC outputs dropped
        logp.append(model.ctc.log_softmax(enc)[0, : int(enc_lens[0])])
    if logp[0].shape != logp[1].shape:
        return f"output lengths {tuple(logp[0].shape)} vs {tuple(logp[1].shape)}"
    diff = float((logp[0] - logp[1]).abs().max())
    if diff > MAX_LOGP_DIFFERENCE:
        return f"max log-posterior difference {diff:.2e} > {MAX_LOGP_DIFFERENCE:g}"
    return None


def size_rows(exp: Path, model_file: Path, test_sets: List[str], dumpdir: Path,
              threads: int) -> List[dict]:
    """One row per exported size (see the module docstring)."""
    table = LatencyTable(exp, threads)
    subnets = json.loads((exp / "subnets.json").read_text())
    rows = []
    for path in exported_sizes(exp):
        record = json.loads(path.read_text())
        outdir, size = path.parent, record["subnet"]
        kw = dict(asr_train_config=str(outdir / "config.yaml"),
                  asr_model_file=str(outdir / "model.pth"), device="cpu")
        fp32 = speech2text(None, ctc_greedy=True, **kw)
        int8 = speech2text(None, ctc_greedy=True, quantize_asr_model=True, **kw)
        supernet = speech2text(size, ctc_greedy=True, asr_train_config=str(exp / "config.yaml"),
                               asr_model_file=str(model_file), device="cpu")
        row = dict(size=size, encoder=record["encoder"],
                   params=record.get("params_kept", record["params"]),  # sparse: nonzero
                   encoder_gflops_per_sec=subnets[size]["encoder_gflops_per_sec"],
                   model_bytes=record["model_bytes"],
                   int8_bytes=_saved_bytes(quantize_int8(fp32.asr_model), outdir),
                   onnx_bytes=record.get("onnx_bytes"),
                   pack_bytes=Path(record["pack"]).stat().st_size if record.get("pack") else None,
                   latency_ms=table.get(file_key(outdir / "model.pth", "fp32"),
                                        lambda: fp32.asr_model),
                   int8_latency_ms=table.get(file_key(outdir / "model.pth", "int8"),
                                             lambda: int8.asr_model),
                   greedy={})
        for dset in test_sets:
            ref, scp = dumpdir / "raw" / dset / "text", dumpdir / "raw" / dset / "wav.scp"
            hyp = {name: greedy_decode(s2t, scp, outdir / "greedy" / dset / f"{name}.txt")
                   for name, s2t in (("supernet", supernet), ("fp32", fp32), ("int8", int8))}
            differing = differing_utterances(hyp["supernet"], hyp["fp32"])
            wavs = read_text(str(scp))
            for key in differing:  # only rounding may tell them apart
                gap = unexplained_argmax_flip(supernet.asr_model, fp32.asr_model, wavs[key])
                if gap is not None:
                    raise RuntimeError(
                        f"size {size}, {dset}, {key}: the exported model's greedy hypothesis "
                        f"differs from the supernet's beyond rounding ({gap}; {hyp['fp32']})")
            row["greedy"][dset] = {name: score_files(str(ref), str(h))[0].error_rate
                                   for name, h in hyp.items()}
            row["greedy"][dset]["identical_to_supernet"] = not differing
            row["greedy"][dset]["near_tie_utterances"] = len(differing)
        rows.append(row)
        logging.info("size %s: %.2fM params, %.1f ms fp32, %.1f ms int8", size,
                     row["params"] / 1e6, row["latency_ms"], row["int8_latency_ms"])
    return rows


def _saved_bytes(model: torch.nn.Module, outdir: Path) -> int:
    path = outdir / "model_int8.pth"
    if not path.exists():
        torch.save(model.state_dict(), path)
    return path.stat().st_size


def deployment_table(rows: List[dict], wer13: Dict[tuple, float], test_sets: List[str]) -> str:
    """Markdown table of the rows (fractions relative to the largest size)."""
    full = max(rows, key=lambda r: r["params"])
    head = ("| size | encoder | params | GFLOPs/s | model.pth | int8 | ONNX | size vs full "
            "| latency fp32 | latency int8 |"
            + "".join(f" WER {d} | greedy fp32 / int8 {d} |" for d in test_sets))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        mb = lambda b: f"{b / 2**20:.2f} MB" if b else "-"  # noqa: E731
        cells = [r["size"], r["encoder"], f"{r['params'] / 1e6:.2f}M",
                 f"{r['encoder_gflops_per_sec']:.2f}", mb(r["model_bytes"]),
                 mb(r["int8_bytes"]), mb(r["onnx_bytes"]),
                 f"{r['model_bytes'] / full['model_bytes']:.3f} (params "
                 f"{r['params'] / full['params']:.3f})",
                 f"{r['latency_ms']:.1f} ms", f"{r['int8_latency_ms']:.1f} ms"]
        for d in test_sets:
            g = r["greedy"][d]
            w = wer13.get((r["size"], d))
            cells += ["-" if w is None else f"{w:.2f}", f"{g['fp32']:.2f} / {g['int8']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(results_md: Path, table: str, threads: int) -> None:
    """Replace (or add) the deployment section of RESULTS.md."""
    text = results_md.read_text() if results_md.exists() else "# RESULTS\n"
    text = re.split(rf"\n{re.escape(SECTION)}\n", text)[0].rstrip("\n")
    text += (f"\n\n{SECTION}\nExported models (`export/size<N>/`): parameters, encoder "
             "GFLOPs per second of audio, file sizes, CPU latency of encoder + CTC greedy on "
             f"a 10 s input ({threads} threads, median, this machine), WER of stage 13 and "
             "CTC-greedy WER of the exported fp32 / int8 model (the fp32 hypotheses equal "
             "the masked supernet's). Plot: `pareto.png`.\n\n" + table + "\n")
    results_md.write_text(text)


def exported_sizes(exp: Path) -> List[Path]:
    """The ``export.json`` files of ``<exp>/export/size*/``, smallest size first."""
    exports = sorted((exp / "export").glob("size*/export.json"),
                     key=lambda p: size_sort_key(p.parent.name[4:]))
    if not exports:
        raise FileNotFoundError(f"no {exp}/export/size*/export.json: run stage 14's export")
    return exports


def check_model_files(exp: Path, model_file: Path) -> None:
    """Load the supernet and every export once, so that an unreadable or unfitting model
    file fails (``espnet_supernet.checkpoint``) before any output is rewritten."""
    load_model(exp / "config.yaml", model_file)
    for path in exported_sizes(exp):
        load_model(path.parent / "config.yaml", path.parent / "model.pth")


def deployment_report(exp: Path, model_file: Optional[Path], test_sets: List[str],
                      dumpdir: Path, threads: int) -> str:
    """Measure every exported size, write ``deploy.json``, the RESULTS.md section and
    ``pareto.png`` into ``exp``; returns the markdown table.

    Args:
        exp: the experiment directory.
        model_file: the supernet's weights (None: what the exports came from).
        test_sets: the sets of ``<dumpdir>/raw`` to decode (the last one is plotted).
        dumpdir: the recipe's dump directory.
        threads: threads for the latency measurements.
    """
    if model_file is None:
        source = json.loads(exported_sizes(exp)[0].read_text())["source"]
        model_file = Path(source["model"])
    check_model_files(exp, model_file)
    rows = size_rows(exp, model_file, test_sets, dumpdir, threads)
    wer13 = stage13_wer(exp)
    (exp / "deploy.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = deployment_table(rows, wer13, test_sets)
    write_section(exp / "RESULTS.md", table, threads)
    pareto_plot(rows, wer13, test_sets[-1], exp / "pareto.png")
    return table
