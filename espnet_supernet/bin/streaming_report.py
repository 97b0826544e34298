#!/usr/bin/env python3
"""Streaming decoding of every TODM size: WER, real-time factor and first-token latency.

Usage:
    python -m espnet_supernet.bin.streaming_report --exp exp/asr_x \\
        --model_file exp/asr_x/valid.loss.ave.pth --test_sets "test_clean" \\
        [--chunk_ms 160] [--beam_size 1] [--threads 1] [--max_utts 100]

Run it in the recipe directory (stage 14 does, for a transducer). One model is loaded
once; each utterance is fed as waveform chunks of ``--chunk_ms`` through the streaming
front end, the MH-SSM encoder and the frame-synchronous search
(``espnet_supernet.decode.streaming_transducer``) at every named size, with ``--threads``
threads. Writes ``results/<exp>/streaming.json``: per size and test set the WER of the
streamed hypotheses, the real-time factor and the first-token latency (median, 90th
percentile).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_supernet.bin.cli import run_cli
from espnet_supernet.checkpoint import CheckpointError
from espnet_supernet.deploy.streaming_report import streaming_report, write_streaming


def get_parser() -> argparse.ArgumentParser:
    """Command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", type=Path, required=True, help="the experiment directory")
    parser.add_argument("--model_file", type=Path, help="default: <exp>/valid.loss.ave.pth")
    parser.add_argument("--test_sets", default="test_clean",
                        help="space-separated sets under --dumpdir")
    parser.add_argument("--dumpdir", type=Path, default=Path("dump/raw"))
    parser.add_argument("--sizes", nargs="+", help="sizes to decode (default: all)")
    parser.add_argument("--chunk_ms", type=float, default=160.0, help="waveform chunk")
    parser.add_argument("--beam_size", type=int, default=1, help="1: greedy")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, as on device")
    parser.add_argument("--max_utts", type=int, default=None,
                        help="only the first utterances of each set")
    parser.add_argument("--results_dir", type=Path, default=Path("results"))
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    """Parse the arguments, decode and write the record."""

    def run(args: argparse.Namespace) -> None:
        model_file = args.model_file or args.exp / "valid.loss.ave.pth"
        record = streaming_report(args.exp, model_file, args.test_sets.split(), args.dumpdir,
                                  args.sizes, args.chunk_ms, args.beam_size, args.threads,
                                  max_utts=args.max_utts)
        logging.info(f"wrote {write_streaming(record, args.results_dir)}")

    run_cli("streaming_report", get_parser(), cmd, run,
            (FileNotFoundError, ValueError, CheckpointError))


if __name__ == "__main__":
    main()
