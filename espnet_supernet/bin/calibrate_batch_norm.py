#!/usr/bin/env python3
"""Re-estimate each subnet's BatchNorm statistics on training data and save the model.

Usage:
    python -m espnet_supernet.bin.calibrate_batch_norm \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/train_clean_100/wav.scp,speech,sound \\
        --output exp/asr/valid.loss.ave.bncal.pth [--num_batches 20] [--batch_size 8]

Utterances are drawn at random (``--seed``). See
:mod:`espnet_supernet.train.batch_norm_calibration` for what is computed.
"""

import argparse
import logging
import random
import tempfile
from pathlib import Path
from typing import List, Optional

import torch

from espnet_supernet.tasks.asr import SupernetASRTask
from espnet_supernet.train.batch_norm_calibration import calibrate_batch_norm


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, required=True)
    parser.add_argument("--data_path_and_name_and_type", required=True,
                        help="e.g. dump/raw/train/wav.scp,speech,sound")
    parser.add_argument("--output", type=Path, required=True, help="model file to write")
    parser.add_argument("--num_batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Calibrate every named subnet and write the model file."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    model, train_args = SupernetASRTask.build_model_from_file(
        args.asr_train_config, args.asr_model_file, "cpu")
    path, name, kind = args.data_path_and_name_and_type.split(",")
    keys = [line.split(maxsplit=1)[0] for line in open(path, encoding="utf-8") if line.strip()]
    n = min(len(keys), args.num_batches * args.batch_size)
    chosen = sorted(random.Random(args.seed).sample(range(len(keys)), n))  # file order
    with tempfile.NamedTemporaryFile("w", suffix=".scp") as key_file:
        key_file.write("".join(f"{keys[i]}\n" for i in chosen))
        key_file.flush()
        loader = SupernetASRTask.build_streaming_iterator(
            data_path_and_name_and_type=[(path, name, kind)],
            dtype="float32",
            batch_size=args.batch_size,
            key_file=key_file.name,
            num_workers=0,
            preprocess_fn=SupernetASRTask.build_preprocess_fn(train_args, False),
            collate_fn=SupernetASRTask.build_collate_fn(train_args, False),
            allow_variable_data_keys=False,
            inference=True,
        )
        batches = [batch for _, batch in loader]
    calibrate_batch_norm(model, batches)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.output)
    logging.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
