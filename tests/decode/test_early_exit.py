"""One loaded supernet at any size, and early-exit CTC decoding (decode/early_exit.py)."""

import pytest
import torch

from espnet_supernet.decode.ctc_greedy_search import best_path
from espnet_supernet.decode.early_exit import EarlyExitDecoder, decode_fixed, shared_prefix
from tiny_models import make_model

# 3 blocks: "s" = block 0, "m" = blocks 0 and 1, "l" = all three (each a prefix)
MASKS = {"s": [1] * 4 + [0] * 8, "m": [1] * 8 + [0] * 4, "l": [1] * 12}


def prefix_model(bn_stats="per_size", **kwargs):
    model = make_model(sizes=None, encoder_conf=dict(subnet_masks=MASKS, bn_stats=bn_stats),
                       **kwargs).eval()
    with torch.no_grad():  # trained-looking statistics, equal in every size's slot
        for layer in model.encoder.encoders:
            norm = layer.conv_module.norm
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    model.encoder.reset_size_statistics()
    return model


def utterance(seed=0, frames=80):
    return torch.randn(frames, 20, generator=torch.Generator().manual_seed(seed))


def test_the_size_switches_between_utterances_and_back():
    model = prefix_model()
    x = utterance()
    first = decode_fixed(model, "s", x)
    decode_fixed(model, "l", x)
    assert decode_fixed(model, "s", x) == first
    assert model.active_subnet == "l"  # decode_fixed restores the active size
    model.set_subnet("s")
    with torch.no_grad():
        enc, _ = model.encode(x.unsqueeze(0), torch.tensor([80]))
        log_probs = model.ctc.log_softmax(enc)[0]
    assert first[0] == best_path(log_probs, model.blank_id).tolist()
    assert first[1] == pytest.approx(float(log_probs.max(-1).values.exp().mean()), rel=1e-6)


def test_nested_prefix_sizes_reuse_the_blocks_already_run():
    model = prefix_model()
    assert shared_prefix(model, "s", "m") == 1 and shared_prefix(model, "m", "l") == 2
    decoder = EarlyExitDecoder(model, threshold=1.0)  # never confident: up to "l"
    x = utterance(1)
    result = decoder(x)
    assert result.size == "l" and list(result.confidences) == ["s", "m", "l"]
    tokens, confidence = decode_fixed(model, "l", x)
    assert result.tokens == tokens  # the reused state is the large size's own
    assert result.confidences["l"] == pytest.approx(confidence, rel=1e-5)
    assert result.confidences["s"] == pytest.approx(decode_fixed(model, "s", x)[1], rel=1e-5)
    # each block ran once: the cost of "l" alone, not of s + m + l
    assert result.flops_per_second == pytest.approx(decoder.size_flops("l"), rel=1e-9)


def test_a_confident_small_size_answers_alone():
    model = prefix_model()
    decoder = EarlyExitDecoder(model, threshold=0.0)
    x = utterance(2)
    result = decoder(x)
    assert result.size == "s" and list(result.confidences) == ["s"]
    assert result.tokens == decode_fixed(model, "s", x)[0]
    assert result.flops_per_second == pytest.approx(decoder.size_flops("s"))
    assert decoder.size_flops("s") < decoder.size_flops("m") < decoder.size_flops("l")


def test_no_reuse_where_the_blocks_compute_differently():
    """Per-size BatchNorm statistics that differ: block 0's conv module is not the same
    computation in "s" and "m"; the escalation then runs "m" in full."""
    model = prefix_model()
    norm = model.encoder.encoders[0].conv_module.norm
    with torch.no_grad():
        norm.slot_running_mean[model.subnet_names.index("s")] += 0.5
    assert shared_prefix(model, "s", "m") == 0 and shared_prefix(model, "m", "l") == 2
    decoder = EarlyExitDecoder(model, sizes=["s", "m"], threshold=1.0)
    x = utterance(3)
    result = decoder(x)
    assert result.tokens == decode_fixed(model, "m", x)[0]
    expected = decoder.size_flops("s") + sum(decoder.block_flops["m"])
    assert result.flops_per_second == pytest.approx(expected)
    # static "layers" sizes are spread over the depth: not prefixes of each other
    spread = make_model(sizes=(4, 8, 12)).eval()
    assert shared_prefix(spread, "4", "8") == 1  # block 0: skipped in both


def test_a_size_with_its_own_front_end_width_shares_no_block():
    """"s" runs the front end at 8 of 16 channels: "m" cannot start from its state and
    pays its own (full) front end."""
    model = make_model(sizes=None, encoder_conf=dict(
        subnet_masks=MASKS, subnet_frontend_channels={"s": 8})).eval()
    assert shared_prefix(model, "s", "m") == 0 and shared_prefix(model, "m", "l") == 2
    decoder = EarlyExitDecoder(model, threshold=1.0)
    assert decoder.size_flops("s") < decoder.size_flops("m")
    x = utterance(4)
    result = decoder(x)
    for size in ("s", "m", "l"):
        assert result.confidences[size] == pytest.approx(decode_fixed(model, size, x)[1],
                                                         rel=1e-5)
    assert result.tokens == decode_fixed(model, "l", x)[0]
    assert result.flops_per_second == pytest.approx(
        decoder.size_flops("s") + decoder.size_flops("l"), rel=1e-9)


def test_bad_settings_are_rejected():
    model = prefix_model()
    with pytest.raises(ValueError, match="unknown size 'xl'"):
        EarlyExitDecoder(model, sizes=["s", "xl"])
    with pytest.raises(ValueError, match="threshold must be in"):
        EarlyExitDecoder(model, threshold=1.5)


def test_report_on_test_sets_brackets_early_exit_between_the_sizes(tmp_path):
    """early_exit_report on a tiny generated test set: at threshold 0 early exit is the
    smallest size (same WER, same compute), at 1 the largest (same WER, more compute:
    the smallest ran too, and the static sizes share no block)."""
    import numpy as np
    import soundfile
    import yaml

    from espnet_supernet.deploy.early_exit_report import early_exit_report, write_early_exit
    from tiny_models import make_task_supernet

    _, config, path = make_task_supernet(tmp_path)
    config["token_type"] = "char"
    path.write_text(yaml.safe_dump(config))
    data = tmp_path / "dump" / "test"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    scp, text = [], []
    for i in range(3):
        wav = data / f"u{i}.flac"
        soundfile.write(wav, rng.normal(0, 0.1, 8000 + 2000 * i).astype("float32"), 16000)
        scp.append(f"u{i} {wav}")
        text.append(f"u{i} a b c")
    (data / "wav.scp").write_text("\n".join(scp) + "\n")
    (data / "text").write_text("\n".join(text) + "\n")
    record = early_exit_report(tmp_path, tmp_path / "model.pth", ["test"], tmp_path / "dump",
                               [0.0, 1.0])
    rows = {r["mode"]: r for r in record["rows"]}
    assert set(rows) == {"size 4", "size 8", "early exit 0", "early exit 1"}
    assert rows["early exit 0"]["wer"] == rows["size 4"]["wer"]
    assert rows["early exit 0"]["encoder_gflops_per_sec"] == rows["size 4"]["encoder_gflops_per_sec"]
    assert rows["early exit 0"]["answered"] == {"4": 3, "8": 0}
    assert rows["early exit 1"]["wer"] == rows["size 8"]["wer"]
    assert rows["early exit 1"]["answered"] == {"4": 0, "8": 3}
    assert rows["size 8"]["fraction_of_largest"] == 1.0
    assert 1.0 < rows["early exit 1"]["fraction_of_largest"] < 2.0
    out = write_early_exit(record, tmp_path / "results")
    assert out.name == "early_exit.json" and out.parent.name == tmp_path.name
