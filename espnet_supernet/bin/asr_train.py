#!/usr/bin/env python3
"""Train an ASR supernet: ``espnet2.bin.asr_train`` with espnet_supernet's classes.

Usage:
    python -m espnet_supernet.bin.asr_train --config conf/train_supernet.yaml \\
        --train_data_path_and_name_and_type dump/raw/train/wav.scp,speech,sound ... \\
        (same arguments as ``python -m espnet2.bin.asr_train``)

Registered here: ``--encoder supernet_conformer``, ``--model supernet``.
"""

from espnet_supernet.tasks.asr import SupernetASRTask


def get_parser():
    """The ESPnet ASR training parser with the supernet choices."""
    return SupernetASRTask.get_parser()


def main(cmd=None):
    """Run training (``cmd``: argument list, default ``sys.argv[1:]``)."""
    SupernetASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
