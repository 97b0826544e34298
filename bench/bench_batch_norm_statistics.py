#!/usr/bin/env python3
"""Dev loss of every size with its own BatchNorm statistics vs the shared ones.

Usage (in a recipe directory, after stage 12 wrote the calibrated model):
    ../../../.venv/bin/python ../../../bench/bench_batch_norm_statistics.py \\
        --exp exp/asr_train_supernet_conformer_demo [--data dump/raw/dev_clean] \\
        [--model valid.loss.ave.bncal.pth] [--output ../../../bench/results/bn_stats_demo.json]

Loads the trained supernet (per-size statistics re-estimated by stage 12, see
``espnet_supernet.train.batch_norm_calibration``), runs the whole dev set through every
named size twice, with ``bn_stats: per_size`` and with the statistics shared by all sizes
(the stock BatchNorm buffers, updated by every training forward), and writes the summed CTC
/ attention loss and the greedy CTC CER per size and mode as JSON. Not a unit test.
"""

import argparse
import json
import platform
from pathlib import Path

import torch

from espnet_supernet.tasks.asr import SupernetASRTask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=Path("dump/raw/dev_clean"))
    parser.add_argument("--model", default="valid.loss.ave.bncal.pth")
    parser.add_argument("--batch_size", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    model, train_args = SupernetASRTask.build_model_from_file(
        args.exp / "config.yaml", args.exp / args.model, "cpu")
    model.eval()
    loader = SupernetASRTask.build_streaming_iterator(
        data_path_and_name_and_type=[(str(args.data / "wav.scp"), "speech", "sound"),
                                     (str(args.data / "text"), "text", "text")],
        dtype="float32", batch_size=args.batch_size, num_workers=0,
        preprocess_fn=SupernetASRTask.build_preprocess_fn(train_args, False),
        collate_fn=SupernetASRTask.build_collate_fn(train_args, False),
        allow_variable_data_keys=False, inference=False,
    )
    batches = [batch for _, batch in loader]
    utts = sum(len(b["speech"]) for b in batches)
    result = {}
    for mode in ("per_size", "shared"):
        model.encoder.bn_stats = mode
        totals = {}
        for batch in batches:
            with torch.no_grad():
                _, stats, _ = model(**{k: v.clone() for k, v in batch.items()})
            n = len(batch["speech"])
            for name in model.subnet_names:
                for key in ("loss", "cer_ctc"):
                    value = stats.get(f"{key}_{name}")
                    if value is not None:
                        totals.setdefault(name, {}).setdefault(key, 0.0)
                        totals[name][key] += float(value) * n / utts
        result[mode] = totals
    report = dict(
        exp=str(args.exp), model=args.model, data=str(args.data), utterances=utts,
        machine=platform.node(), per_size=result["per_size"], shared=result["shared"],
        per_size_beats_shared={n: result["per_size"][n]["loss"] < result["shared"][n]["loss"]
                               for n in model.subnet_names},
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
