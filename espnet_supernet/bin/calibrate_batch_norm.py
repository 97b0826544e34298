#!/usr/bin/env python3
"""Re-estimate each subnet's BatchNorm statistics on training data and save the model.

Usage:
    python -m espnet_supernet.bin.calibrate_batch_norm \\
        --asr_train_config exp/asr/config.yaml --asr_model_file exp/asr/valid.loss.ave.pth \\
        --data_path_and_name_and_type dump/raw/train_clean_100/wav.scp,speech,sound \\
        --output exp/asr/valid.loss.ave.bncal.pth [--num_batches 20] [--batch_size 8]

Utterances are drawn at random (``--seed``) and batched by length. See
:mod:`espnet_supernet.train.batch_norm_calibration` for what is computed and
:mod:`espnet_supernet.deploy.batch_norm_recalibration` for which models are copied as is.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.deploy.batch_norm_recalibration import recalibrate_checkpoint


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


def calibrate(args: argparse.Namespace) -> None:
    """Calibrate the model given on the command line and write ``--output``."""
    recalibrate_checkpoint(args.asr_train_config, args.asr_model_file,
                           args.data_path_and_name_and_type, args.output,
                           num_batches=args.num_batches, batch_size=args.batch_size,
                           seed=args.seed)


def main(cmd: Optional[List[str]] = None) -> None:
    """Calibrate every named subnet and write the model file."""
    run_cli("calibrate_batch_norm", get_parser(), cmd, calibrate,
            (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
