"""A recipe run's published record: what the docs render their figures from.

An experiment directory (``exp/asr_<tag>/``) is not committed: it holds checkpoints and
decoding outputs. Its record, ``results/asr_<tag>/`` in the recipe directory, is small,
machine-readable and committed:

- ``training.json``: the training budget and what it cost (updates, epochs, wall time per
  epoch and in total, from the reporter that ESPnet saves in ``checkpoint.pth``), the
  key settings of the config, the last epoch's validation stats per size and, for a
  learned selection, the modules each size kept (``subnets.json``);
- ``scores.json``: per size and test set, the word and character error counts of stage 13
  (re-scored from the hypothesis files) with the decoding config that produced them;
- ``deploy.json``: stage 14's deployment rows (exported file sizes, latency, CTC greedy
  WER of the exported fp32 / int8 model), when stage 14 ran.

Every file is written here, from the experiment directory; nothing is typed in by hand.
"""

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import yaml

from espnet_supernet.data.scoring import score_files

# config keys that define the training budget and the model family
CONFIG_KEYS = ("config", "model", "encoder", "decoder", "selection", "sparsity", "optim",
               "scheduler", "batch_type", "batch_size", "batch_bins", "max_epoch",
               "num_iters_per_epoch", "accum_grad", "seed", "ngpu")


def _plain(value: Any) -> Any:
    """JSON-safe copy of a reporter value (tensors, timedeltas, numpy scalars)."""
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN: a slot that did not train
        return None
    return value


def training_record(exp: Path) -> Dict[str, Any]:
    """Budget, cost and last validation stats of the training run in ``exp``.

    Args:
        exp: Experiment directory with ESPnet's ``config.yaml`` and ``checkpoint.pth``.

    Returns:
        ``{"settings": {...}, "epochs": [{"epoch", "updates", "train_seconds",
        "valid_seconds"}], "updates", "train_seconds", "valid_seconds", "valid": {...},
        "subnets": {name: {"kept", "encoder_params"}}}`` (``subnets`` only when
        ``subnets.json`` lists the kept modules: a learned selection).

    Raises:
        FileNotFoundError: ``config.yaml`` or ``checkpoint.pth`` is missing.
    """
    config_path, checkpoint = exp / "config.yaml", exp / "checkpoint.pth"
    for path in (config_path, checkpoint):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run stage 11 (training) first")
    config = yaml.safe_load(config_path.read_text())
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file
        raise FileNotFoundError(f"{checkpoint} is unreadable ({error}): re-run stage 11 "
                                "(it resumes from the last complete epoch)") from error
    stats = state["reporter"]["stats"]
    epochs = []
    for epoch in sorted(stats):
        train, valid = stats[epoch].get("train", {}), stats[epoch].get("valid", {})
        epochs.append(dict(epoch=epoch, updates=_plain(train.get("total_count")),
                           train_seconds=_plain(train.get("time")),
                           valid_seconds=_plain(valid.get("time"))))
    last = stats[max(stats)].get("valid", {}) if stats else {}
    settings = {key: config.get(key) for key in CONFIG_KEYS if key in config}
    settings["model_conf"] = config.get("model_conf", {})
    for conf in ("selection_conf", "sparsity_conf"):
        if config.get(conf):
            settings[conf] = config[conf]
    settings["encoder_conf"] = {k: v for k, v in config.get("encoder_conf", {}).items()
                                if not isinstance(v, (list, dict)) or k.startswith("subnet")}
    record = dict(
        settings=settings, epochs=epochs,
        updates=epochs[-1]["updates"] if epochs else 0,
        train_seconds=round(sum(e["train_seconds"] or 0.0 for e in epochs), 3),
        valid_seconds=round(sum(e["valid_seconds"] or 0.0 for e in epochs), 3),
        valid={key: _plain(value) for key, value in last.items()
               if key not in ("time", "total_count")},
    )
    subnets_path = exp / "subnets.json"
    if subnets_path.is_file():
        subnets = json.loads(subnets_path.read_text())
        if all("kept" in row for row in subnets.values()):
            record["subnets"] = {name: dict(kept=row["kept"],
                                            encoder_params=row["encoder_params"])
                                 for name, row in subnets.items()}
    return record


def score_records(exp: Path) -> List[Dict[str, Any]]:
    """Stage 13's error counts, re-scored from the hypotheses ``score_summary.jsonl`` names.

    Args:
        exp: Experiment directory with ``score_summary.jsonl`` (stage 13).

    Returns:
        One dict per size and test set (``wer``, ``cer`` in %, the word counts ``sub``,
        ``del``, ``ins``, ``words``, the parameters and FLOPs, ``decoding``, ``lm``).
    """
    path = exp / "score_summary.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run stage 13 (scoring) first")
    rows = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        wer, cer = score_files(entry["ref"], entry["hyp"])
        rows.append(dict(
            size=str(entry["size"]), test_set=entry["test_set"],
            wer=round(wer.error_rate, 4), cer=round(cer.error_rate, 4),
            sub=wer.sub, **{"del": wer.dele}, ins=wer.ins, words=wer.n_ref,
            utterances=wer.n_sent, encoder_params=entry["encoder_params"],
            total_params=entry["total_params"],
            encoder_gflops_per_sec=entry["encoder_gflops_per_sec"],
            decoding=entry.get("decoding"), lm=entry.get("lm")))
    return rows


def machine() -> Dict[str, Any]:
    """Where the run was recorded: host type, cores, library versions."""
    import espnet

    cpu = ""
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return dict(cpu=cpu or platform.processor(), cores=os.cpu_count(),
                torch=torch.__version__, espnet=espnet.__version__,
                python=platform.python_version())


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def publish_run(exp: Path, results_dir: Path, parts: Optional[List[str]] = None) -> List[Path]:
    """Write ``results_dir/<exp name>/{training,scores,deploy}.json`` from ``exp``.

    Args:
        exp: Experiment directory.
        results_dir: The recipe's committed ``results/`` directory.
        parts: Which records to write (default: every one whose source exists;
            ``deploy`` needs stage 14's ``deploy.json``).

    Returns:
        The files written.
    """
    out = results_dir / exp.name
    sources = dict(training=exp / "checkpoint.pth", scores=exp / "score_summary.jsonl",
                   deploy=exp / "deploy.json")
    wanted = parts or [name for name, src in sources.items() if src.exists()]
    unknown = sorted(set(wanted) - set(sources))
    if unknown:
        raise ValueError(f"unknown record(s) {unknown}: choose from {sorted(sources)}")
    written = []
    stamp = dict(experiment=exp.name,
                 recorded=datetime.datetime.now(datetime.timezone.utc)
                 .strftime("%Y-%m-%d %H:%M UTC"), machine=machine())
    for name in wanted:
        if name == "training":
            data = dict(stamp, **training_record(exp))
        elif name == "scores":
            data = dict(stamp, rows=score_records(exp))
        else:
            if not sources["deploy"].is_file():
                raise FileNotFoundError(f"{sources['deploy']} is missing: run stage 14")
            data = dict(stamp, rows=json.loads(sources["deploy"].read_text()))
        _write_json(out / f"{name}.json", data)
        written.append(out / f"{name}.json")
    return written
