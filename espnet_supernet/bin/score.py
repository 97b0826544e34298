"""Score decoding results (ESPnet's asr.sh stage 13, without sclite).

Usage:
    python -m espnet_supernet.bin.score --ref data/test_clean/text \\
        --hyp exp/asr_x/decode_16/test_clean/text \\
        [--out exp/asr_x/decode_16/test_clean/score]
    python -m espnet_supernet.bin.score --summary exp/asr_x/score_summary.jsonl \\
        [--summary exp/asr_y/score_summary.jsonl ...] --results_md RESULTS.md

The first form scores one hypothesis file, prints its WER/CER summary and, with
``--out``, writes it to ``<out>/result.txt``. The second form reads one JSON
object per line::

    {"size": "16", "test_set": "test_clean", "ref": "data/test_clean/text",
     "hyp": "exp/asr_x/decode_16/test_clean/text", "encoder_params": 1234567,
     "total_params": 2345678, "encoder_gflops_per_sec": 1.5}

(an optional ``"out"`` names the scoring directory, default ``<dir of hyp>/score``;
paths are relative to the current directory), scores every entry, writes each
``result.txt``, writes RESULTS.md to ``--results_md`` and prints its tables. With several
``--summary`` files (one per experiment, titled by its directory name) RESULTS.md starts
with a table comparing their WER / CER size by size; ``--keep_missing`` also keeps the
experiments an existing ``--results_md`` has that no ``--summary`` names.
Exits non-zero on an unreadable file, a malformed entry or an empty reference
transcript (the message names the utterance).
"""

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from espnet_supernet.data.score_summary import score_summary
from espnet_supernet.data.scoring import (
    format_result,
    read_results_md,
    results_table,
    score_files,
    write_result,
    write_results_md,
)


def get_parser() -> argparse.ArgumentParser:
    """Builds the command-line parser.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", help="Reference text file (one-pair mode).")
    parser.add_argument("--hyp", help="Hypothesis text file (one-pair mode).")
    parser.add_argument("--out", help="Directory for result.txt (one-pair mode).")
    parser.add_argument("--summary", action="append",
                        help="JSON-lines file of entries to score (repeatable: one per "
                        "experiment, compared in RESULTS.md).")
    parser.add_argument("--results_md", help="RESULTS.md to write (summary mode).")
    parser.add_argument("--keep_missing", action="store_true",
                        help="Keep the experiments of the existing --results_md that no "
                        "--summary names (e.g. their exp dirs were cleaned since), as "
                        "they were written, in its comparison and sections.")
    return parser


def main(cmd: Optional[Sequence[str]] = None) -> None:
    """Runs the scoring.

    Args:
        cmd: Command-line arguments; ``sys.argv[1:]`` if None.
    """
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    parser = get_parser()
    args = parser.parse_args(cmd)
    pair_mode = any(x is not None for x in (args.ref, args.hyp, args.out))
    summary_mode = args.summary is not None or args.results_md is not None
    if pair_mode == summary_mode:
        parser.error("give either --ref/--hyp [--out] or --summary/--results_md")
    if pair_mode and (args.ref is None or args.hyp is None):
        parser.error("--ref and --hyp go together")
    if summary_mode and (args.summary is None or args.results_md is None):
        parser.error("--summary and --results_md go together")
    try:
        if pair_mode:
            wer, cer = score_files(args.ref, args.hyp)
            if args.out is not None:
                write_result(args.out, args.ref, args.hyp, wer, cer)
            print(format_result(args.ref, args.hyp, wer, cer), end="")
        else:
            sections = {}
            for path in args.summary:
                title = os.path.basename(os.path.dirname(os.path.abspath(path)))
                if title in sections:
                    parser.error(f"two --summary files from the same directory: {path}")
                sections[title] = score_summary(path)
            kept = None
            if args.keep_missing and os.path.exists(args.results_md):
                kept = read_results_md(args.results_md)
                for title in kept:
                    if title not in sections:
                        logging.info(f"keeping {title} from {args.results_md}")
            write_results_md(sections, args.results_md, kept)
            for title, rows in sections.items():
                print(f"{title}\n{results_table(rows)}")
    except (OSError, ValueError) as error:
        sys.exit(f"score: {error}")


if __name__ == "__main__":
    main()
