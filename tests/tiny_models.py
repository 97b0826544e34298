"""Tiny supernet encoder arguments and model builder shared by the unit tests."""

import torch
from espnet2.asr.ctc import CTC
from espnet2.asr.decoder.transformer_decoder import TransformerDecoder

from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder
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
