"""Constructor arguments of the tiny supernet encoder the unit tests share."""

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
