"""Tiny supernet encoder arguments and model builder shared by the unit tests."""

from pathlib import Path

import torch
import yaml
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
from espnet_supernet.tasks.asr import SupernetASRTask
from espnet_supernet.train.supernet_asr_model import SupernetASRModel

TINY_ENCODER = dict(
    input_size=20,
    output_size=16,
    attention_heads=2,
    linear_units=24,
    num_blocks=3,
    cnn_module_kernel=5,
    rel_pos_type="latest",
    pos_enc_layer_type="rel_pos",
    selfattention_layer_type="rel_selfattn",
    macaron_style=True,
    dropout_rate=0.0,
    positional_dropout_rate=0.0,
    attention_dropout_rate=0.0,
)


VOCAB = 12


def make_model(sizes=(4, 8, 12), decoder=False, encoder_conf=None, **model_conf):
    torch.manual_seed(0)
    enc = SupernetConformerEncoder(**{**TINY_ENCODER, "subnet_sizes": list(sizes or []),
                                      **(encoder_conf or {})})
    dec = TransformerDecoder(VOCAB, 16, attention_heads=2, linear_units=16,
                             num_blocks=1) if decoder else None
    model_conf.setdefault("ctc_weight", 0.5 if decoder else 1.0)
    return SupernetASRModel(
        vocab_size=VOCAB, token_list=[f"t{i}" for i in range(VOCAB)], frontend=None,
        specaug=None, normalize=None, preencoder=None, encoder=enc, postencoder=None,
        decoder=dec, ctc=CTC(VOCAB, 16), joint_network=None, **model_conf,
    )


CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech/supernet/conf"
TOKENS = ["<blank>", "<unk>", "a", "b", "c", "d", "<sos/eos>"]
# block: ffn_macaron 4 chunks, mhsa 2 heads, conv, ffn 4 chunks (11 units), 2 blocks
COMPONENT_MASK = [1, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1,
                  0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1]  # fmt: skip


def build_task_model(tmp_path: Path, config: dict):
    """(args, model) of a training config dict, parsed by the task as ``asr_train`` would
    (token list ``TOKENS``, no normalisation), seed 0."""
    (tmp_path / "in.yaml").write_text(yaml.safe_dump(config))
    args = SupernetASRTask.get_parser().parse_args([
        "--config", str(tmp_path / "in.yaml"), "--token_list", str(tmp_path / "tokens.txt"),
        "--output_dir", str(tmp_path / "exp"), "--normalize", "none",
    ])  # fmt: skip
    args.token_list = TOKENS
    torch.manual_seed(0)
    return args, SupernetASRTask.build_model(args)


def make_task_supernet(tmp_path: Path, config_updates=None, **encoder_conf):
    """The tiny recipe supernet (sizes 4 and 8, per-size CTC heads, a decoder) with
    random per-size BatchNorm statistics; returns (model, config dict, config path).
    ``encoder_conf`` entries with value None are removed."""
    config = yaml.safe_load((CONF / "tuning/train_supernet_conformer_tiny.yaml").read_text())
    config["encoder_conf"].update(encoder_conf)
    config["encoder_conf"] = {k: v for k, v in config["encoder_conf"].items() if v is not None}
    config.update(config_updates or {})
    args, model = build_task_model(tmp_path, config)
    model.eval()
    with torch.no_grad():
        for layer in model.encoder.encoders:
            if layer.conv_module is None:  # use_cnn_module: false
                continue
            norm = layer.conv_module.norm
            norm.slot_running_mean.normal_()
            norm.slot_running_var.uniform_(0.5, 2.0)
    config = vars(args)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    return model, config, path


TRANSDUCER_TOKENS = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
TRANSDUCER_ENCODER = dict(output_size=16, ssm_heads=2, ssm_state_size=8, linear_units=32, num_blocks=3,
               dropout_rate=0.1, cnn_module_kernel=5,
               subnets={"small": {"depth": 1, "width": 0.5}, "mid": {"depth": 2, "width": 0.75}})


def make_transducer(tmp_path, **model_conf):
    """(args, model) of a tiny ``supernet_mhssm`` + ``supernet_transducer`` task model."""
    args = SupernetASRTask.get_parser().parse_args([
        "--encoder", "supernet_mhssm", "--decoder", "transducer", "--model",
        "supernet_transducer", "--token_list", str(tmp_path / "t.txt"),
        "--output_dir", str(tmp_path), "--frontend_conf", "n_mels=20",
        "--normalize", "none", "--specaug", "none", "--token_type", "char",
    ])  # fmt: skip
    args.token_list = TRANSDUCER_TOKENS
    args.encoder_conf = TRANSDUCER_ENCODER
    args.decoder_conf = {"hidden_size": 16}
    args.joint_net_conf = {"joint_space_size": 16}
    args.model_conf = {"ctc_weight": 0.0, **model_conf}
    torch.manual_seed(0)
    return args, SupernetASRTask.build_model(args)


def transducer_batch():
    """A 2-utterance waveform batch for ``make_transducer`` models."""
    torch.manual_seed(1)
    return dict(speech=torch.randn(2, 16000), speech_lengths=torch.tensor([16000, 12000]),
                text=torch.tensor([[2, 3, 4], [3, 2, -1]]), text_lengths=torch.tensor([3, 2]))
