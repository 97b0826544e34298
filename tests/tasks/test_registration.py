"""Registration into ESPnet's own ASR task choices."""

import subprocess
import sys

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.espnet_model import ESPnetASRModel


def test_classes_registered_in_espnet_choices():
    import espnet2.tasks.asr as espnet_asr

    import espnet_supernet.tasks.asr as ours

    assert espnet_asr.encoder_choices.get_class("supernet_conformer") is \
        ours.SupernetConformerEncoder
    assert issubclass(espnet_asr.encoder_choices.get_class("supernet_conformer"), AbsEncoder)
    assert issubclass(espnet_asr.model_choices.get_class("supernet"), ESPnetASRModel)
    assert issubclass(ours.SupernetASRTask, espnet_asr.ASRTask)


def test_train_help_lists_registered_names_without_nltk_noise():
    out = subprocess.run(
        [sys.executable, "-m", "espnet_supernet.bin.asr_train", "--help"],
        capture_output=True, text=True, check=True,
    )
    for name in ("supernet_conformer", "pruned_conformer", "mhssm}",  # encoders
                 "supernet,supernet_transducer}", "scaledadam", "eden"):  # models, optim
        assert name in out.stdout, name
    assert "{static,simple_topk,iterative_zero_out,ortho_softmax}" in out.stdout
    assert "nltk_data" not in out.stderr


def test_inference_help_has_subnet_option():
    out = subprocess.run(
        [sys.executable, "-m", "espnet_supernet.bin.asr_inference", "--help"],
        capture_output=True, text=True, check=True,
    )
    assert "--subnet" in out.stdout


def test_unknown_selection_fails_listing_the_valid_names(capsys):
    import pytest

    from espnet_supernet.tasks.asr import SupernetASRTask

    with pytest.raises(SystemExit):
        SupernetASRTask.get_parser().parse_args(["--selection", "random_pick"])
    err = capsys.readouterr().err
    assert "random_pick" in err and "simple_topk" in err and "iterative_zero_out" in err
