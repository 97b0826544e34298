"""Registers espnet_supernet's classes in ESPnet's ASR task.

Importing this module inserts the package's encoders and models into the module-level
``ClassChoices`` of ``espnet2.tasks.asr`` (ESPnet has no plugin mechanism), so that
``--encoder supernet_conformer`` / ``--model supernet`` work in ``ASRTask`` and in DDP
workers, which re-import this module. ``SupernetASRTask`` is the task the entry points use.
"""

from espnet_supernet.espnet_import import import_quietly

espnet_asr = import_quietly("espnet2.tasks.asr")

from espnet2.asr.encoder.abs_encoder import AbsEncoder  # noqa: E402
from espnet2.asr.espnet_model import ESPnetASRModel  # noqa: E402

from espnet_supernet.nets.supernet_conformer_encoder import (  # noqa: E402
    SupernetConformerEncoder,
)
from espnet_supernet.train.supernet_asr_model import SupernetASRModel  # noqa: E402

ENCODERS = {"supernet_conformer": SupernetConformerEncoder}
MODELS = {"supernet": SupernetASRModel}


def _register(choices, classes, base) -> None:
    for name, cls in classes.items():
        if not issubclass(cls, base):
            raise TypeError(f"{cls.__name__} must subclass {base.__name__}")
        choices.classes[name] = cls


_register(espnet_asr.encoder_choices, ENCODERS, AbsEncoder)
_register(espnet_asr.model_choices, MODELS, ESPnetASRModel)


class SupernetASRTask(espnet_asr.ASRTask):
    """ESPnet's ASR task with the supernet classes registered."""
