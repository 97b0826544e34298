"""Import ESPnet's ASR task without its offline noise and its unused start-up cost.

Importing ``espnet2.tasks.asr`` pulls in g2p_en, which calls ``nltk.download`` at import
time (printing connection errors on machines without internet), and ESPnet's attention
module prints a flash-attn notice. Both are harmless; this module captures them and logs
them at DEBUG level.

It also defers two imports that ESPnet makes for options these recipes do not use:
``g2p_en`` (``g2p: g2p_en``; it loads nltk, which tries its downloads) and
``tacotron_cleaner.cleaners`` (``cleaner: tacotron``; building inflect's engine takes ~3
s). Each stands in ``sys.modules`` as a :class:`DeferredModule` until one of its
attributes is first read, and is imported then, so a config that uses them works as
before; every other process (each stage, job and decoding run) starts ~3-5 s sooner.
"""

import contextlib
import functools
import importlib
import importlib.util
import io
import logging
import sys
from types import ModuleType

DEFERRED = ("g2p_en", "tacotron_cleaner.cleaners")


#: Special attributes whose lookup imports a deferred module: the import system's
#: ``__path__`` (a submodule import) and ``from module import *``'s ``__all__``.
LOADING_DUNDERS = frozenset({"__path__", "__all__"})


class DeferredModule(ModuleType):
    """Placeholder for a module that is imported when an attribute of it is first read.

    Other special attributes (``__file__``, ``__version__``, ...) are reported missing
    without importing: ``inspect.getmodule`` asks every module in ``sys.modules`` for its
    ``__file__``, and torch runs it whenever it registers an operator (e.g. on the lazy
    import of ``torch.onnx``, which the first forward of an encoder triggers); that would
    import both modules in every decoding process.
    """

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr not in LOADING_DUNDERS:
            raise AttributeError(f"deferred module {self.__name__!r} has no {attr!r} "
                                 "until one of its attributes is used")
        return getattr(load_deferred(self.__name__), attr)


def defer_import(name: str) -> None:
    """Put placeholders for ``name`` (and its packages) in ``sys.modules``, unless it is
    imported already or its top-level package is not installed."""
    top = name.split(".")[0]
    if name in sys.modules or top in sys.modules or importlib.util.find_spec(top) is None:
        return
    parts = name.split(".")
    parent = None
    for i in range(len(parts)):
        module = sys.modules[".".join(parts[: i + 1])] = DeferredModule(".".join(parts[: i + 1]))
        if parent is not None:
            setattr(parent, parts[i], module)
        parent = module


def defer_unused_imports() -> None:
    """Defer every :data:`DEFERRED` module (see :func:`defer_import`): what
    :func:`import_quietly` and ``espnet_supernet.bin.espnet_tool`` do before ESPnet loads."""
    for name in DEFERRED:
        defer_import(name)


def load_deferred(name: str) -> ModuleType:
    """Import the real module ``name`` in place of its placeholders; the placeholders
    (still referenced by whoever imported them) take on the real modules' namespaces."""
    parts = name.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    placeholders = {n: sys.modules.pop(n) for n in names
                    if isinstance(sys.modules.get(n), DeferredModule)}
    real = importlib.import_module(name)
    for n, placeholder in placeholders.items():
        placeholder.__dict__.update(sys.modules[n].__dict__)
    return real


def import_quietly(module: str) -> ModuleType:
    """Import ``module`` with nltk download errors and import-time prints captured, and
    the :data:`DEFERRED` modules deferred."""
    if module in sys.modules:
        return sys.modules[module]
    importlib.import_module("torch")  # first: its import reads every loaded module

    defer_unused_imports()
    captured = io.StringIO()
    nltk = sys.modules.get("nltk")  # not loaded at all while g2p_en is deferred
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
