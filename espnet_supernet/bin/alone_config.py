#!/usr/bin/env python3
"""Write the config that trains a learned selection's subnets alone.

Usage:
    python -m espnet_supernet.bin.alone_config --config conf/train_X.yaml \\
        --subnets exp/asr_train_X_seed0/subnets.json --output exp/alone_conf/X_seed0.yaml

The output is ``--config`` with ``selection: static`` and ``encoder_conf.subnet_masks``
set to the learned masks of the one job's ``subnets.json``; train one size of it alone
with ``--model_conf train_only=<name>`` (``local/compare_alone.sh --runs alone`` does, for
every size and seed), so that each learned size is compared with its own architecture
trained from scratch for the same updates, as Dynamic Encoder Size and OrthoSoftmax do.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.data.alone_config import write_learned_alone_config


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True,
                        help="the learned selection's training config (conf/*.yaml)")
    parser.add_argument("--subnets", type=Path, required=True,
                        help="the one job's subnets.json (stage 12 writes it in the exp dir)")
    parser.add_argument("--output", type=Path, required=True, help="the config to write")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments and write the config."""

    def run(args: argparse.Namespace) -> None:
        print(write_learned_alone_config(args.config, args.subnets, args.output))

    run_cli("alone_config", get_parser(), cmd, run, (FileNotFoundError, ValueError))


if __name__ == "__main__":
    main()
