#!/usr/bin/env python3
"""Write each named subnet's mask, parameter count and encoder FLOPs as JSON.

Usage:
    python -m espnet_supernet.bin.subnet_report --asr_train_config exp/asr/config.yaml \\
        --asr_model_file exp/asr/valid.loss.ave.pth --output exp/asr/subnets.json \\
        [--seconds 10]

Counting conventions: see :mod:`espnet_supernet.nets.subnet_cost`. ``total_params`` counts
the whole model as the subnet uses it (its encoder modules, its own CTC head, the decoder).
The report is :func:`espnet_supernet.deploy.subnet_report.subnet_report`.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_supernet.deploy.subnet_report import write_subnet_report
from espnet_supernet.tasks.asr import SupernetASRTask


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--asr_train_config", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="utterance length for the FLOPs count")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Load the model and write the report."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    model, _ = SupernetASRTask.build_model_from_file(
        args.asr_train_config, args.asr_model_file, "cpu"
    )
    write_subnet_report(model, args.output, args.seconds)


if __name__ == "__main__":
    main()
