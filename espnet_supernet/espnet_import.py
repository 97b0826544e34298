"""Import ESPnet's ASR task without its offline noise.

Importing ``espnet2.tasks.asr`` pulls in g2p_en, which calls ``nltk.download`` at import
time (printing connection errors on machines without internet), and ESPnet's attention
module prints a flash-attn notice. Both are harmless; this module captures them and logs
them at DEBUG level. With internet, nltk still downloads as usual.
"""

import contextlib
import functools
import importlib
import io
import logging
import sys
from types import ModuleType


def import_quietly(module: str) -> ModuleType:
    """Import ``module`` with nltk download errors and import-time prints captured."""
    if module in sys.modules:
        return sys.modules[module]
    captured = io.StringIO()
    try:
        import nltk
    except ImportError:  # pragma: no cover - nltk comes with espnet
        nltk = None
    download = nltk.download if nltk is not None else None
    if nltk is not None:
        nltk.download = functools.partial(download, quiet=True, print_error_to=captured)
    try:
        with contextlib.redirect_stdout(captured):
            mod = importlib.import_module(module)
    finally:
        if nltk is not None:
            nltk.download = download
    if captured.getvalue():
        logging.getLogger(__name__).debug("import %s said: %s", module, captured.getvalue().strip())
    return mod
