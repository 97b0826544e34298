"""``asr_inference --subnet 4 8``: one process decodes every size in turn, each into its own
``{subnet}`` directory, with the same hypotheses as one process per size."""

import numpy as np
import pytest
import soundfile

from espnet_supernet.bin import asr_inference
from tiny_models import make_task_supernet


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    exp = tmp_path_factory.mktemp("exp")
    make_task_supernet(exp, config_updates={"token_type": "char"})
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        path = exp / f"u{i}.wav"
        soundfile.write(path, rng.normal(0, 0.1, 16000 + 4000 * i).astype("float32"), 16000)
        lines.append(f"u{i} {path}")
    (exp / "wav.scp").write_text("\n".join(lines) + "\n")
    return exp


def _argv(exp, *subnets, output_dir):
    return ["--subnet", *subnets, "--ngpu", "0", "--batch_size", "1", "--ctc_greedy", "true",
            "--data_path_and_name_and_type",
            f"{exp / 'wav.scp'},speech,sound", "--asr_train_config", str(exp / "config.yaml"),
            "--asr_model_file", str(exp / "model.pth"), "--output_dir", output_dir]


def _tokens(directory):
    return (directory / "1best_recog" / "token_int").read_text().splitlines()


def test_several_subnets_in_one_process_match_one_process_each(exp, capsys):
    asr_inference.main(_argv(exp, "4", "8", output_dir=str(exp / "both_{subnet}")))
    log = capsys.readouterr().err
    for size in ("4", "8"):
        alone = exp / f"alone_{size}"
        asr_inference.main(_argv(exp, size, output_dir=str(alone)))
        both = _tokens(exp / f"both_{size}")
        assert len(both) == 3 and both == _tokens(alone), size
        assert f"decoding with subnet {size} -> {exp / f'both_{size}'}" in log
    # the sizes are different networks: their CTC paths are not all the same
    assert _tokens(exp / "both_4") != _tokens(exp / "both_8")


def test_several_subnets_need_a_placeholder_and_write_nothing(exp):
    out = exp / "flat"
    with pytest.raises(SystemExit, match=r"put \{subnet\} in --output_dir"):
        asr_inference.main(_argv(exp, "4", "8", output_dir=str(out)))
    assert not out.exists()
