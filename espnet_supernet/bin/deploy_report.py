#!/usr/bin/env python3
"""Deployment table of the exported sizes (recipe stage 14): size, speed and WER.

Usage:
    python -m espnet_supernet.bin.deploy_report --exp exp/asr_x [--threads 2] \\
        [--test_sets "dev_clean test_clean"] [--dumpdir dump]

For every ``<exp>/export/size<N>/`` (written by ``espnet_supernet.bin.export``):
- parameters, encoder FLOPs/s, file sizes (fp32 ``model.pth``, int8 Linear weights, ONNX,
  pack zip) and their fraction of the full size's;
- CPU latency of encoder + CTC greedy on 10 s, fp32 and int8, measured here (median,
  ``--threads``), cached per machine (``<exp>/latency_<machine>.json``);
- CTC greedy decoding of the test sets with the masked supernet, the exported fp32 model
  and its int8 version: the exported hypotheses must equal the supernet's (checked), the
  WER shows what int8 costs; the WER of stage 13 (the recipe's decoding config) is shown
  next to them.
Writes ``<exp>/deploy.json``, a "Deployment" section in ``<exp>/RESULTS.md`` and
``<exp>/pareto.png`` (WER vs parameters and vs measured latency, one point per size).
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.deploy.deployment_report import deployment_report


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True)
    parser.add_argument("--asr_model_file", type=Path, default=None,
                        help="supernet weights (default: what the exports came from)")
    parser.add_argument("--test_sets", default="dev_clean test_clean")
    parser.add_argument("--dumpdir", type=Path, default=Path("dump"))
    parser.add_argument("--threads", type=int, default=2)
    return parser


def report(args: argparse.Namespace) -> str:
    """Measure, write deploy.json, the RESULTS.md section and the plot; print the table."""
    table = deployment_report(args.exp, args.asr_model_file, args.test_sets.split(),
                              args.dumpdir, args.threads)
    print(table)
    return table


def main(cmd: Optional[List[str]] = None) -> None:
    """Write the deployment report of an experiment."""
    run_cli("deploy_report", get_parser(), cmd, report,
            (FileNotFoundError, RuntimeError, ValueError))


if __name__ == "__main__":
    main()
