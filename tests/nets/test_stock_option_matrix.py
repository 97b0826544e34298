"""ESPnet's own ConformerEncoder test matrix, run against SupernetConformerEncoder.

ESPnet's ``test/espnet2/asr/encoder/test_conformer_encoder.py`` builds the stock encoder
over input_layer x positionwise_layer_type x (rel_pos_type, pos_enc_layer_type,
selfattention_layer_type) x (interctc_layer_idx, interctc_use_conditioning) x
stochastic_depth_rate (all with ``macaron_style=False``) and checks a forward/backward
and its invalid arguments. Here every point of that matrix is built twice, stock and
supernet, with the same arguments and the stock weights (``strict=True``), and:

* in eval mode the supernet's output, lengths and intermediate CTC outputs equal stock's;
* in train mode the supernet runs a backward with finite gradients;
* in train mode without dropout, with the same seed before each forward, stochastic depth
  and layer drop make the same random choices as stock (same output, same gradients);
* the invalid arguments of ESPnet's test raise the same exception type.

Extra matrices cover what ESPnet's test leaves out: macaron on with the linear FFN (this
project's usual block) over every input layer and positional encoding, and the block
structures of ``macaron_style`` x ``use_cnn_module`` x ``positionwise_layer_type``.
"""

import copy
import logging
from typing import Dict, List

import pytest
import torch
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

from espnet_supernet.nets.supernet_conformer_encoder import SupernetConformerEncoder

TOL = 1e-5
VOCAB = 5  # CTC vocabulary of the self-conditioning tests
LENGTHS = (32, 25)

INPUT_LAYERS = ["linear", "conv2d", "conv2d1", "conv2d2", "conv2d6", "conv2d8", "embed"]
FFN_TYPES = ["conv1d", "conv1d-linear"]  # ESPnet's matrix; "linear" is in the extra ones
POS_ENC = {  # id -> (rel_pos_type, pos_enc_layer_type, selfattention_layer_type)
    "abs_pos": ("legacy", "abs_pos", "selfattn"),
    "latest_rel_pos": ("latest", "rel_pos", "rel_selfattn"),
    "legacy_rel_pos_renamed": ("legacy", "rel_pos", "rel_selfattn"),
    "legacy_rel_pos": ("legacy", "legacy_rel_pos", "legacy_rel_selfattn"),
}
INTERCTC = {  # id -> (interctc_layer_idx, interctc_use_conditioning)
    "no_interctc": ([], False),
    "interctc1": ([1], False),
    "interctc1_cond": ([1], True),
}
STOCH_DEPTH = {"sd0": 0.0, "sd0.1": 0.1, "sd_list": [0.1, 0.1]}

# Small versions of ESPnet's sizes (its test uses output_size 2, linear_units 4).
BASE = dict(
    input_size=20,
    output_size=8,
    attention_heads=2,
    linear_units=16,
    num_blocks=2,
    cnn_module_kernel=3,
    activation_type="swish",
    dropout_rate=0.1,
    positional_dropout_rate=0.1,
)


@pytest.fixture(autouse=True)
def _quiet_legacy_warnings():
    """Stock logs a deprecation warning per legacy rel-pos encoder: keep the log short."""
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


# ---------------------------------------------------------------------------- helpers
def _inputs(input_layer: str, seed: int = 0, requires_grad: bool = False):
    g = torch.Generator().manual_seed(seed)
    if input_layer == "embed":  # token ids, input_size is the vocabulary
        x = torch.randint(0, 10, (2, max(LENGTHS)), generator=g)
    else:
        x = torch.randn(2, max(LENGTHS), 20, generator=g).requires_grad_(requires_grad)
    return x, torch.tensor(LENGTHS)


def _randomise(encoder: torch.nn.Module) -> None:
    """Move every float weight and BatchNorm statistic off its initial value, so that a
    LayerNorm used in the wrong place (all start as identity maps up to normalisation) or
    a BatchNorm with the wrong statistics shows in the outputs."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for name, t in encoder.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0, generator=g)
            elif name.endswith("running_mean"):
                t.uniform_(-0.5, 0.5, generator=g)
            else:
                t.add_(0.1 * torch.randn(t.shape, generator=g))


def _pair(conditioning: bool = False, randomise: bool = True, **kw):
    """Stock and supernet encoders of the same arguments and weights (+ a shared CTC)."""
    torch.manual_seed(0)
    stock = ConformerEncoder(**kw)
    if randomise:
        _randomise(stock)
    supernet = SupernetConformerEncoder(**kw)
    supernet.load_state_dict(stock.state_dict(), strict=True)
    ctc = None
    if conditioning:
        # As ESPnetASRModel does: the model sets the encoder's conditioning layer.
        ctc = CTC(odim=VOCAB, encoder_output_size=kw["output_size"])
        stock.conditioning_layer = torch.nn.Linear(VOCAB, kw["output_size"])
        supernet.conditioning_layer = copy.deepcopy(stock.conditioning_layer)
    return stock, supernet, ctc


def _run(encoder, x, lens, ctc=None):
    """(output, lengths, intermediate outputs [(layer, tensor)]) of an encoder call."""
    out, olens, states = encoder(x, lens, ctc=ctc)
    assert states is None
    if isinstance(out, tuple):
        out, intermediate = out
        return out, olens, list(intermediate)
    return out, olens, []


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item() if a.numel() else 0.0


def _assert_same_outputs(ref, got) -> None:
    (ref_out, ref_lens, ref_inter), (out, lens, inter) = ref, got
    assert torch.equal(lens, ref_lens)
    assert _max_diff(out, ref_out) <= TOL
    assert [i for i, _ in inter] == [i for i, _ in ref_inter], "intermediate layers"
    for (layer, t), (_, ref_t) in zip(inter, ref_inter):
        assert _max_diff(t, ref_t) <= TOL, f"intermediate output of layer {layer}"


def _check_eval_equal(stock, supernet, ctc, input_layer: str, expect_inter: List[int]):
    stock.eval()
    supernet.eval()
    x, lens = _inputs(input_layer)
    with torch.no_grad():
        ref = _run(stock, x, lens, ctc)
        got = _run(supernet, x, lens, ctc)
    assert [i for i, _ in ref[2]] == expect_inter  # the reference itself, as documented
    _assert_same_outputs(ref, got)


def _check_train_backward(supernet, ctc, input_layer: str) -> None:
    supernet.train()
    x, lens = _inputs(input_layer, seed=1, requires_grad=True)
    torch.manual_seed(1)
    out, _, _ = _run(supernet, x, lens, ctc)
    out.sum().backward()
    grads = {n: p.grad for n, p in supernet.named_parameters() if p.grad is not None}
    assert grads, "no parameter got a gradient"
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients: {bad}"
    if x.requires_grad:
        assert x.grad is not None and torch.isfinite(x.grad).all()


def _kwargs(input_layer, ffn, pos, interctc, sd, **extra):
    rel_pos_type, pos_enc_layer_type, selfattention_layer_type = POS_ENC[pos]
    layers, conditioning = INTERCTC[interctc]
    kw = dict(
        BASE,
        input_layer=input_layer,
        positionwise_layer_type=ffn,
        rel_pos_type=rel_pos_type,
        pos_enc_layer_type=pos_enc_layer_type,
        selfattention_layer_type=selfattention_layer_type,
        interctc_layer_idx=list(layers),
        interctc_use_conditioning=conditioning,
        stochastic_depth_rate=copy.deepcopy(STOCH_DEPTH[sd]),
    )
    kw.update(extra)
    return kw, conditioning


def _check_matrix_point(kw: Dict, conditioning: bool) -> None:
    stock, supernet, ctc = _pair(conditioning, **kw)
    _check_eval_equal(stock, supernet, ctc, kw["input_layer"], kw["interctc_layer_idx"])
    _check_train_backward(supernet, ctc, kw["input_layer"])


# ------------------------------------------------------------- ESPnet's matrix itself
@pytest.mark.parametrize("sd", list(STOCH_DEPTH))
@pytest.mark.parametrize("interctc", list(INTERCTC))
@pytest.mark.parametrize("pos", list(POS_ENC))
@pytest.mark.parametrize("ffn", FFN_TYPES)
@pytest.mark.parametrize("input_layer", INPUT_LAYERS)
def test_espnet_matrix(input_layer, ffn, pos, interctc, sd):
    """ESPnet's test_encoder_forward_backward point (macaron off, conv module on)."""
    kw, conditioning = _kwargs(input_layer, ffn, pos, interctc, sd,
                               macaron_style=False, use_cnn_module=True)
    _check_matrix_point(kw, conditioning)


# ------------------------------------------- macaron + linear FFN (the project's block)
@pytest.mark.parametrize("pos", list(POS_ENC))
@pytest.mark.parametrize("input_layer", INPUT_LAYERS)
def test_macaron_linear_input_layers(input_layer, pos):
    kw, conditioning = _kwargs(input_layer, "linear", pos, "no_interctc", "sd0",
                               macaron_style=True, use_cnn_module=True)
    _check_matrix_point(kw, conditioning)


@pytest.mark.parametrize("sd", list(STOCH_DEPTH))
@pytest.mark.parametrize("interctc", list(INTERCTC))
def test_macaron_linear_stock_options(interctc, sd):
    """The interctc / stochastic-depth axes of ESPnet's matrix on the project's block."""
    kw, conditioning = _kwargs("conv2d", "linear", "latest_rel_pos", interctc, sd,
                               macaron_style=True, use_cnn_module=True)
    _check_matrix_point(kw, conditioning)


@pytest.mark.parametrize("normalize_before", [True, False], ids=["pre_norm", "post_norm"])
@pytest.mark.parametrize("ffn", ["linear"] + FFN_TYPES)
@pytest.mark.parametrize("use_cnn_module", [True, False], ids=["cnn", "no_cnn"])
@pytest.mark.parametrize("macaron_style", [True, False], ids=["macaron", "no_macaron"])
def test_block_structures(macaron_style, use_cnn_module, ffn, normalize_before):
    """macaron_style x use_cnn_module x FFN type (ESPnet's test always has the conv)."""
    kw, conditioning = _kwargs("conv2d", ffn, "latest_rel_pos", "interctc1_cond", "sd0",
                               macaron_style=macaron_style, use_cnn_module=use_cnn_module,
                               normalize_before=normalize_before, num_blocks=3,
                               interctc_layer_idx=[1, 2])
    _check_matrix_point(kw, conditioning)


# ------------------------------------------------- train mode: the same random choices
def _stock_forward_with_layer_drop(stock: ConformerEncoder, x, lens):
    """Stock ConformerEncoder with its blocks run as ESPnet's ``MultiSequential`` runs
    them (``repeat(num_blocks, ..., layer_drop_rate)``): one ``torch.empty(num_blocks)
    .uniform_()`` per forward (drawn even in eval), block i skipped in training when its
    draw is below ``layer_drop_rate``.

    ESPnet 202511's ``ConformerEncoder.forward`` iterates ``self.encoders`` itself, so
    ``MultiSequential.forward`` never runs and ``layer_drop_rate`` has no effect on the
    stock encoder (see ``test_stock_forward_ignores_layer_drop_rate``); this is the
    semantics the option is declared with, the one the supernet is checked against.
    Only for ``input_layer`` conv2d* and no interctc (enough for these tests).
    """
    masks = (~make_pad_mask(lens)[:, None, :]).to(x.device)
    xs, masks = stock.embed(x, masks)
    xs, masks = stock.encoders(xs, masks)
    if isinstance(xs, tuple):
        xs = xs[0]
    if stock.normalize_before:
        xs = stock.after_norm(xs)
    return xs, masks.squeeze(1).sum(1), []


RNG_CASES = {
    # id -> (encoder arguments, whether the reference needs MultiSequential layer drop)
    "sd0.5_macaron_linear": (dict(stochastic_depth_rate=0.5), False),
    "sd_list_no_macaron_conv1d": (dict(macaron_style=False, positionwise_layer_type="conv1d",
                                       stochastic_depth_rate=[0.0, 0.7, 0.3]), False),
    "sd0.4_no_cnn": (dict(use_cnn_module=False, stochastic_depth_rate=0.4), False),
    "sd0.5_interctc_cond": (dict(stochastic_depth_rate=0.5, interctc_layer_idx=[1, 2],
                                 interctc_use_conditioning=True), False),
    "layer_drop0.5": (dict(layer_drop_rate=0.5), True),
    "layer_drop0.4_sd0.3": (dict(layer_drop_rate=0.4, stochastic_depth_rate=0.3), True),
}


@pytest.mark.parametrize("case", list(RNG_CASES))
def test_train_mode_same_random_choices_as_stock(case):
    """Without dropout, the only randomness in train mode is stochastic depth (stock:
    one ``torch.rand(1)`` per block with rate > 0, in block order) and layer drop (one
    ``uniform_`` over the blocks per forward, before the blocks; a dropped block draws
    no stochastic-depth number): with the same seed before each forward the supernet
    must skip the same blocks, scale by the same 1 / (1 - p) and give the same output
    and gradients as stock."""
    extra, multisequential = RNG_CASES[case]
    kw = dict(BASE, input_layer="conv2d", num_blocks=3, dropout_rate=0.0,
              positional_dropout_rate=0.0, rel_pos_type="latest",
              pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn",
              macaron_style=True, positionwise_layer_type="linear")
    kw.update(copy.deepcopy(extra))
    stock, supernet, ctc = _pair(kw.get("interctc_use_conditioning", False), **kw)
    stock.train()
    supernet.train()
    x, lens = _inputs("conv2d")
    outputs = set()
    for seed in range(6):
        torch.manual_seed(seed)
        if multisequential:
            ref = _stock_forward_with_layer_drop(stock, x, lens)
        else:
            ref = _run(stock, x, lens, ctc)
        torch.manual_seed(seed)
        got = _run(supernet, x, lens, ctc)
        _assert_same_outputs(ref, got)
        outputs.add(round(ref[0].sum().item(), 4))
        stock.zero_grad()
        supernet.zero_grad()
        ref[0].sum().backward()
        got[0].sum().backward()
        sup = dict(supernet.named_parameters())
        for name, p in stock.named_parameters():
            q = sup[name]
            assert (p.grad is None) == (q.grad is None), f"{name} (seed {seed})"
            if p.grad is not None:
                assert _max_diff(q.grad, p.grad) <= 1e-4, f"{name} (seed {seed})"
    assert len(outputs) > 1, "the seeds never changed a random choice: test is void"


def test_stock_forward_ignores_layer_drop_rate():
    """Documents the stock quirk behind ``_stock_forward_with_layer_drop``: ESPnet's
    ConformerEncoder accepts layer_drop_rate but its forward never applies it. If this
    starts failing, ESPnet fixed it and the layer-drop reference above should become
    the plain stock forward."""
    kw = dict(BASE, input_layer="conv2d", num_blocks=3, dropout_rate=0.0,
              positional_dropout_rate=0.0)
    torch.manual_seed(0)
    plain = ConformerEncoder(**kw).train()
    torch.manual_seed(0)
    dropping = ConformerEncoder(**kw, layer_drop_rate=0.9).train()
    x, lens = _inputs("conv2d")
    for seed in range(3):
        torch.manual_seed(seed)
        a = plain(x, lens)[0]
        torch.manual_seed(seed)
        b = dropping(x, lens)[0]
        assert torch.equal(a, b)


def _blocks_run(supernet, x, lens, forwards: int) -> torch.Tensor:
    """How often each block's self-attention ran over ``forwards`` train forwards."""
    counts = torch.zeros(len(supernet.encoders))
    hooks = [layer.norm_mha.register_forward_hook(
        lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
        for i, layer in enumerate(supernet.encoders)]
    try:
        with torch.no_grad():
            for _ in range(forwards):
                supernet(x, lens)
    finally:
        for h in hooks:
            h.remove()
    return counts


@pytest.mark.parametrize("option", ["stochastic_depth_rate", "layer_drop_rate"])
def test_skip_frequency(option):
    """Statistical check, independent of how the random numbers are drawn: over many
    train forwards each block is skipped at about the given rate (and never in eval).
    (Kept next to the exact RNG test above, which is the stronger check while the
    supernet draws exactly as stock.)"""
    rate, forwards = 0.3, 400
    kw = dict(BASE, input_layer="linear", num_blocks=2, dropout_rate=0.0,
              positional_dropout_rate=0.0, macaron_style=True,
              positionwise_layer_type="linear", **{option: rate})
    torch.manual_seed(0)
    supernet = SupernetConformerEncoder(**kw).train()
    x, lens = _inputs("linear")
    torch.manual_seed(0)
    skipped = 1 - _blocks_run(supernet, x, lens, forwards) / forwards
    # binomial sd = sqrt(0.3 * 0.7 / 400) ~ 0.023: 5 sd either side
    assert ((skipped - rate).abs() < 0.115).all(), skipped
    assert (_blocks_run(supernet.eval(), x, lens, 20) == 20).all()


# ----------------------------------------------------------------- invalid arguments
def _raises_like_stock(expected, **kw) -> None:
    """The stock encoder raises ``expected`` (checked, so the case stays meaningful) and
    the supernet raises the same type."""
    with pytest.raises(expected):
        ConformerEncoder(**kw)
    with pytest.raises(expected):
        SupernetConformerEncoder(**kw)


INVALID = {
    # id -> (exception, arguments); ESPnet's invalid cases, its spelling kept
    "rel_pos_type_dummy": (ValueError, dict(rel_pos_type="dummy")),
    "pos_enc_dummy": (ValueError, dict(pos_enc_layer_type="dummy")),
    "pos_enc_abc_selfattn_dummy": (ValueError, dict(pos_enc_layer_type="abc_pos",
                                                    selfattention_layer_type="dummy")),
    "abs_pos_selfattn_dummy": (ValueError, dict(pos_enc_layer_type="abs_pos",
                                                selfattention_layer_type="dummy")),
    "latest_with_legacy_rel_pos": (AssertionError, dict(
        rel_pos_type="latest", pos_enc_layer_type="legacy_rel_pos",
        selfattention_layer_type="legacy_rel_sselfattn")),
    "rel_pos_with_legacy_selfattn": (AssertionError, dict(
        pos_enc_layer_type="rel_pos", selfattention_layer_type="legacy_rel_sselfattn")),
    "legacy_rel_pos_with_rel_selfattn": (AssertionError, dict(
        pos_enc_layer_type="legacy_rel_pos", selfattention_layer_type="rel_sselfattn")),
    "interctc_layer_0": (AssertionError, dict(num_blocks=2, interctc_layer_idx=[0, 1])),
    "interctc_layer_num_blocks": (AssertionError, dict(num_blocks=2,
                                                       interctc_layer_idx=[1, 2])),
    "input_layer_fff": (ValueError, dict(input_layer="fff")),
    "positionwise_unknown": (NotImplementedError, dict(positionwise_layer_type="gmlp")),
    "stochastic_depth_list_short": (ValueError, dict(num_blocks=2,
                                                     stochastic_depth_rate=[0.1])),
    "stochastic_depth_list_long": (ValueError, dict(num_blocks=2,
                                                    stochastic_depth_rate=[0.1, 0.1, 0.1])),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_arguments(case):
    expected, args = INVALID[case]
    # ESPnet passes only the argument under test; small sizes keep the cases that build
    # blocks before failing (interctc) fast, and change nothing else.
    _raises_like_stock(expected, input_size=20, **dict(
        dict(output_size=8, attention_heads=2, linear_units=8), **args))


def test_output_size():
    enc = SupernetConformerEncoder(20, output_size=256, attention_heads=4, linear_units=8,
                                   num_blocks=1, cnn_module_kernel=3)
    assert enc.output_size() == 256
