#!/usr/bin/env python3
"""Run one of ESPnet's own tools (``espnet2.bin.*``) without its offline start-up noise.

Usage:
    python -m espnet_supernet.bin.espnet_tool espnet2.bin.tokenize_text --token_type char \\
        --input dump/raw/train/text --output tokens.txt --write_vocabulary true
    python -m espnet_supernet.bin.espnet_tool espnet2.bin.lm_train --config conf/lm.yaml ...
    python -m espnet_supernet.bin.espnet_tool espnet2.bin.lm_calc_perplexity ...
    python -m espnet_supernet.bin.espnet_tool espnet2.bin.lm_train --help   # the tool's help

Same as ``python -m <module> <arguments>``, except that the tool is imported the way
:mod:`espnet_supernet.espnet_import` imports ESPnet's ASR task: ``g2p_en`` and
``tacotron_cleaner`` load only if the run uses them (``--g2p g2p_en``, ``--cleaner
tacotron``), and import-time prints (flash-attn's notice) go to the DEBUG log. Imported
unconditionally, g2p_en tries nltk downloads (``[nltk_data] Error loading ...`` on a
machine without internet) and tacotron_cleaner prints ``SyntaxWarning`` lines and costs
~3 s. The recipe (``supernet.sh``) runs every ESPnet tool that loads the text front end so.
"""

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from espnet_supernet.espnet_import import defer_unused_imports, import_quietly

# At import, not only in main(): a process that ESPnet spawns (multi-GPU training with
# --multiprocessing_distributed) imports this module as its __main__ before ESPnet's, and
# so starts with the same deferrals.
defer_unused_imports()


def get_parser() -> argparse.ArgumentParser:
    """The runner's parser: the module to run and its arguments (passed on untouched)."""
    parser = argparse.ArgumentParser(
        prog="python -m espnet_supernet.bin.espnet_tool",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("module", help="ESPnet tool to run, e.g. espnet2.bin.tokenize_text")
    parser.add_argument("args", nargs=argparse.REMAINDER,
                        help="its arguments (`<module> --help` prints its options)")
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    """Run the tool ``cmd[0]`` with the arguments ``cmd[1:]`` (default ``sys.argv[1:]``).

    The tool's ``main()`` runs with ``sys.argv`` set to ``[<its file>, *arguments]``, so
    its ``--help`` and the command line it logs are those of ``python -m <module>``. It
    is imported under its own name, not run as ``__main__`` (``runpy``): typeguard finds
    ESPnet's ``@typechecked`` functions only in their own module, and this module stays
    ``__main__`` for spawned processes (see above).
    """
    parser = get_parser()
    args = parser.parse_args(cmd)
    try:
        spec = importlib.util.find_spec(args.module)
    except ModuleNotFoundError:
        spec = None
    if spec is None or spec.origin is None or spec.submodule_search_locations is not None:
        parser.error(f"no module {args.module!r} to run: name an ESPnet tool module, "
                     "e.g. espnet2.bin.lm_train (the files in espnet2/bin/)")
    tool = import_quietly(args.module)
    if not callable(getattr(tool, "main", None)):
        parser.error(f"{args.module} has no main() to run: run it with python -m {args.module}")
    sys.argv = [spec.origin, *args.args]
    tool.main()


if __name__ == "__main__":
    main()
