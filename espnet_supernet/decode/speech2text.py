"""ESPnet's ``Speech2Text`` for a named subnet of a supernet, optionally CTC greedy.

Python API::

    from espnet_supernet.decode.speech2text import speech2text
    s2t = speech2text("16", asr_train_config=..., asr_model_file=...)
    text = s2t(speech)[0][0]

The command line is ``espnet_supernet.bin.asr_inference``; it runs ESPnet's
``inference`` within ``subnet_model_loading`` and ``ctc_greedy_decoding``.
"""

import contextlib
from typing import Iterator, Optional

from espnet_supernet.tasks.asr import espnet_asr  # registers the classes
from espnet2.bin import asr_inference as stock  # noqa: E402

from espnet_supernet.checkpoint import load_model  # noqa: E402
from espnet_supernet.decode.ctc_greedy_search import CTCGreedySearch  # noqa: E402


@contextlib.contextmanager
def subnet_model_loading(subnet: Optional[str]) -> Iterator[None]:
    """Within the block, ASR models built from files have ``subnet`` active (None: no
    change, so exported models and plain ESPnet models load too), load through
    :func:`espnet_supernet.checkpoint.load_model` (strictly; sparse model files of
    ``export/sparse_storage.py``, written by the export of a sparsity level, too).

    ``Speech2Text`` builds its model and its CTC scorer in one constructor, so the
    subnet (and its own CTC head and BatchNorm statistics) must be active as soon as the
    model is loaded; this wraps ``ASRTask.build_model_from_file`` for that time.
    """
    task, name = espnet_asr.ASRTask, "build_model_from_file"
    own = task.__dict__.get(name)  # None when inherited from AbsTask

    def build_and_select(cls, config_file=None, model_file=None, device="cpu"):
        # the supernet task (it also attaches what is built beside the model: sparsity),
        # a strict load with errors that name the file (espnet_supernet/checkpoint.py)
        model, train_args = load_model(config_file, model_file, device)
        if subnet is None:  # any model, a supernet decodes with its largest size
            return model, train_args
        if not hasattr(model, "set_subnet"):
            raise ValueError(
                f"--subnet {subnet} given, but the model is a {type(model).__name__}, "
                "not a supernet (model: supernet in the training config)"
            )
        model.set_subnet(subnet)
        return model, train_args

    setattr(task, name, classmethod(build_and_select))
    try:
        yield
    finally:
        if own is None:
            delattr(task, name)
        else:
            setattr(task, name, own)


@contextlib.contextmanager
def ctc_greedy_decoding(enabled: bool = True) -> Iterator[None]:
    """Within the block, ``Speech2Text`` decodes with the CTC best path (if ``enabled``)."""
    original = stock.Speech2Text

    class GreedySpeech2Text(original):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            model = self.asr_model
            if model.ctc is None:
                raise ValueError("--ctc_greedy needs a model with a CTC branch")
            self.beam_search = CTCGreedySearch(model.ctc, model.sos, model.eos,
                                               model.token_list, blank=model.blank_id)

    if enabled:
        stock.Speech2Text = GreedySpeech2Text  # what stock.inference instantiates
    try:
        yield
    finally:
        stock.Speech2Text = original


def speech2text(subnet: Optional[str], ctc_greedy: bool = False, **kwargs) -> stock.Speech2Text:
    """``Speech2Text(**kwargs)`` decoding with the named subnet (None = largest)."""
    with subnet_model_loading(subnet), ctc_greedy_decoding(ctc_greedy):
        return stock.Speech2Text(**kwargs)
