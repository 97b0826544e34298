"""Shared entry-point plumbing of the command-line tools: logging, parsing, clean error exits."""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, Tuple, Type


def run_cli(
    prog: str,
    parser: argparse.ArgumentParser,
    cmd: Sequence[str] | None,
    run: Callable[[argparse.Namespace], Any],
    errors: Tuple[Type[BaseException], ...],
) -> Any:
    """Parse ``cmd`` (``sys.argv[1:]`` if None) and call ``run(args)``.

    An exception of a type in ``errors`` (bad user input) ends the program with
    ``"<prog>: <message>"`` and exit status 1 instead of a traceback.
    """
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    )
    args = parser.parse_args(cmd)
    try:
        return run(args)
    except errors as error:
        sys.exit(f"{prog}: {error}")
