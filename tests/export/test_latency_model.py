"""The per-device latency predictor (espnet_supernet.deploy.latency_model): the subnet
counts, prediction and interpolation, the fit, a real profile of a tiny supernet, its use
by select_subnet, and the errors."""

import json

import numpy as np
import pytest

import espnet_supernet.deploy.latency_model as latency_model
from espnet_supernet.bin.profile_device import main as profile_main
from espnet_supernet.bin.select_subnet import get_parser, select
from espnet_supernet.deploy.latency_model import (
    LatencyModel,
    feature_names,
    profile_device,
    random_masks,
    subnet_features,
    validate,
)
from espnet_supernet.export.latency import machine_id
from espnet_supernet.export.supernet_loading import load_supernet
from espnet_supernet.nets.subnet_space import UnitLayout

from test_select_subnet import make_exp
from tiny_models import make_task_supernet

# macaron FFN (2 chunks), attention (2 heads), conv, FFN (2 chunks); 2 blocks
LAYOUT = UnitLayout((2, 2, 1, 2), 2, ("ffn_macaron", "mhsa", "conv", "ffn"))
COMPONENT = dict(subnet_sizes=None, ffn_chunks=2, prune_heads=True)
ORTHO = dict(selection="ortho_softmax",
             selection_conf=dict(budgets=[0.6, 1.0], granularity="component"))


def test_subnet_features_count_modules_units_and_blocks():
    assert feature_names(LAYOUT) == [
        "fixed", "ffn_macaron.modules", "ffn_macaron.units", "mhsa.modules", "mhsa.units",
        "conv.modules", "ffn.modules", "ffn.units", "blocks"]
    #       block 0: one macaron chunk, both heads | block 1: conv and one FFN chunk
    mask = [1, 0, 1, 1, 0, 0, 0] + [0, 0, 0, 0, 1, 0, 1]
    assert subnet_features(LAYOUT, mask) == {
        "fixed": 1, "ffn_macaron.modules": 1, "ffn_macaron.units": 1, "mhsa.modules": 1,
        "mhsa.units": 2, "conv.modules": 1, "ffn.modules": 1, "ffn.units": 1, "blocks": 2}
    only_block1 = subnet_features(LAYOUT, [0, 0, 0, 0, 1, 1, 1, 1])  # a module mask
    assert only_block1["blocks"] == 1 and only_block1["ffn.units"] == 2
    masks = random_masks(LAYOUT, 5, seed=3)
    assert masks == random_masks(LAYOUT, 5, seed=3) != random_masks(LAYOUT, 5, seed=4)
    assert all(len(m) == 14 and any(m) for m in masks)


def _model(coef5, coef10) -> LatencyModel:
    names = feature_names(LAYOUT)
    return LatencyModel(
        machine=machine_id(1), threads=1, torch_version="x",
        layout=dict(per_module=[2, 2, 1, 2], num_blocks=2,
                    kinds=["ffn_macaron", "mhsa", "conv", "ffn"]),
        features=names, coefficients={"fp32": {"5": dict(zip(names, coef5)),
                                               "10": dict(zip(names, coef10))}})


def test_predict_sums_the_coefficients_and_interpolates_lengths(tmp_path):
    model = _model([10, 1, 0.5, 2, 1, 3, 1, 0.5, 0.2], [20, 2, 1, 4, 2, 6, 2, 1, 0.4])
    full = [1] * 14
    # 10 + 2 * (1 + 2 * 0.5 + 2 + 2 * 1 + 3 + 1 + 2 * 0.5) + 2 * 0.2 at 5 s
    assert model.predict(full, 5.0) == pytest.approx(10 + 2 * 11 + 0.4)
    assert model.predict(full, 10.0) == pytest.approx(2 * (10 + 2 * 11 + 0.4))
    assert model.predict(full, 7.5) == pytest.approx(1.5 * (10 + 2 * 11 + 0.4))
    with pytest.raises(ValueError, match=r"outside the profiled lengths \[5.0, 10.0\]"):
        model.predict(full, 12.0)
    with pytest.raises(ValueError, match="dtype 'int8' was not profiled"):
        model.predict(full, 5.0, "int8")
    again = LatencyModel.load(model.save(tmp_path / "m.json"))
    assert again.predict(full, 7.5) == model.predict(full, 7.5)
    (tmp_path / "bad.json").write_text("{\"a\": 1}")
    with pytest.raises(ValueError, match="not a latency model"):
        LatencyModel.load(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError, match="run python -m espnet_supernet.bin.profile"):
        LatencyModel.load(tmp_path / "missing.json")


def test_the_fit_recovers_known_per_unit_latencies(tmp_path, monkeypatch):
    """Measurements made from known coefficients (plus 0.2 % noise) are fitted back."""
    supernet, config, _ = make_task_supernet(tmp_path, ORTHO, **COMPONENT)
    layout = supernet.encoder.layout
    names = feature_names(layout)
    truth = dict(zip(names, np.linspace(5.0, 0.5, len(names))))
    rng = np.random.default_rng(0)

    def synthetic(factory, dtypes, lengths, threads, repeats):
        factory()  # exports the subnet: the supernet's active mask is now the subnet's
        counts = subnet_features(layout, supernet.encoder.active_mask)
        ms = sum(truth[n] * counts[n] for n in names) * (1 + 0.002 * rng.standard_normal())
        return {d: {f"{s:g}": ms * s for s in lengths} for d in dtypes}

    monkeypatch.setattr(latency_model, "_measure", synthetic)
    model = profile_device(supernet, config, lengths=(1.0, 2.0), dtypes=("fp32",),
                           threads=1, num_random=30)
    fitted = model.coefficients["fp32"]["1"]
    for name in names:
        assert fitted[name] == pytest.approx(truth[name], abs=0.1), name
    assert model.coefficients["fp32"]["2"]["fixed"] == pytest.approx(2 * truth["fixed"],
                                                                     abs=0.3)
    with pytest.raises(ValueError, match="cannot fit 9 coefficients"):
        profile_device(supernet, config, threads=1, num_random=3)
    with pytest.raises(ValueError, match="dtypes must be some of"):
        profile_device(supernet, config, dtypes=("fp16",))


def test_front_end_width_terms_count_and_predict(tmp_path):
    assert feature_names(LAYOUT, frontend=True)[:3] == [
        "fixed", "frontend.width", "frontend.width_sq"]
    mask = [1] * 14
    counts = subnet_features(LAYOUT, mask, width=0.25)
    assert counts["frontend.width"] == 0.25 and counts["frontend.width_sq"] == 0.0625
    assert subnet_features(LAYOUT, mask) == {k: v for k, v in counts.items()
                                             if not k.startswith("frontend.")}
    names = feature_names(LAYOUT, frontend=True)
    coef = dict(zip(names, [10, 4, 8] + [1] * (len(names) - 3)))
    model = LatencyModel(
        machine=machine_id(1), threads=1, torch_version="x", layout=_model([0] * 9,
                                                                           [0] * 9).layout,
        features=names, coefficients={"fp32": {"5": coef}}, frontend_channels=32)
    full = model.predict(mask, 5.0)
    assert full == pytest.approx(10 + 4 + 8 + 2 * 10 + 2)  # 10 module/unit counts a block
    assert model.predict(mask, 5.0, frontend_channels=32) == full
    # 16 of 32 channels: w = 0.5 saves 4 * 0.5 + 8 * 0.75
    assert model.predict(mask, 5.0, frontend_channels=16) == pytest.approx(full - 2 - 6)
    with pytest.raises(ValueError, match="has 32 channels, not 33"):
        model.predict(mask, 5.0, frontend_channels=33)
    with pytest.raises(ValueError, match="profiled with the full front end only"):
        _model([0] * 9, [0] * 9).predict(mask, 5.0, frontend_channels=16)


def test_the_fit_recovers_front_end_width_terms(tmp_path, monkeypatch):
    """A supernet with a narrow named size: the profile draws front-end widths (the named
    sizes' and midpoints by default) and fits the width terms back from synthetic
    measurements."""
    supernet, config, _ = make_task_supernet(tmp_path, ORTHO, **COMPONENT,
                                             subnet_frontend_channels={"0.6": 8})
    layout = supernet.encoder.layout
    names = feature_names(layout, frontend=True)
    truth = dict(zip(names, np.linspace(5.0, 0.5, len(names))))

    def synthetic(factory, dtypes, lengths, threads, repeats):
        factory()  # the supernet's active mask and front end are now the subnet's
        channels = supernet.encoder.active_frontend_channels
        counts = subnet_features(layout, supernet.encoder.active_mask, (channels or 32) / 32)
        ms = sum(truth[n] * counts[n] for n in names)
        return {d: {f"{s:g}": ms * s for s in lengths} for d in dtypes}

    monkeypatch.setattr(latency_model, "_measure", synthetic)
    model = profile_device(supernet, config, lengths=(1.0,), dtypes=("fp32",), threads=1,
                           num_random=30)
    assert model.frontend_channels == 32 and model.features == names
    assert model.frontend_widths == [8, 20]  # the named 8 and (8 + 32) // 2
    widths = [p["frontend_channels"] for p in model.profiled]
    assert {8, 20, None} == set(widths)
    for name in names:
        assert model.coefficients["fp32"]["1"][name] == pytest.approx(truth[name],
                                                                      abs=0.05), name
    result = validate(model, supernet, config, num_random=6, repeats=1)
    named = {r["subnet"]: r for r in result["rows"]}
    assert named["0.6"]["frontend_channels"] == 8 and named["1.0"]["frontend_channels"] is None
    assert all(abs(r["error"]) < 1e-3 for r in result["rows"])
    plain = profile_device(supernet, config, lengths=(1.0,), dtypes=("fp32",), threads=1,
                           num_random=30, frontend_widths=())
    assert plain.frontend_channels == 0 and "frontend.width" not in plain.features
    assert "0.6" not in {r["subnet"] for r in validate(plain, supernet, config, 2, 1)["rows"]}
    with pytest.raises(ValueError, match="can keep 1..32, got 40"):
        profile_device(supernet, config, threads=1, frontend_widths=[40])


def test_profile_a_tiny_supernet_then_select_by_predicted_latency(tmp_path):
    exp = make_exp(tmp_path, {"0.6": 1, "1.0": 0}, config_updates=ORTHO, **COMPONENT)
    out = tmp_path / "latency_model.json"
    profile_main(["--exp", str(exp), "--threads", "1", "--lengths", "1", "10",
                  "--num_random", "12", "--validate", "3", "--repeats", "2",
                  "--output", str(out)])
    data = json.loads(out.read_text())
    assert data["machine"] == machine_id(1) and sorted(data["coefficients"]) == ["fp32",
                                                                               "int8"]
    assert len(data["profiled"]) == 12 and all(
        p["subnet"].startswith("random0_") for p in data["profiled"])
    rows = data["validation"]["rows"]
    # the 2 named sizes and the other random subnets the fit did not see; 2 dtypes, 2 lengths
    profiled = {tuple(p["mask"]) for p in data["profiled"]}
    subnets = {r["subnet"] for r in rows}
    assert {"0.6", "1.0"} <= subnets and len(subnets) <= 5 and len(rows) == 4 * len(subnets)
    assert all(r["predicted_ms"] > 0 and r["measured_ms"] > 0 for r in rows)
    held_out = [r for r in rows if r["held_out"]]
    assert data["validation"]["summary"]["int8"]["measurements"] == len(held_out) // 2
    assert all(r["subnet"] in ("0.6", "1.0") for r in rows if not r["held_out"])
    assert len(profiled) >= 11
    model = LatencyModel.load(out)
    full = model.predict([1] * model.unit_layout.num_units, 10.0)
    assert full > model.predict([1] + [0] * (model.unit_layout.num_units - 1), 10.0)

    # select_subnet: predicted with the model, measured without it
    select_args = ["--exp", str(exp), "--max_latency_ms", "1.0", "--threads", "1",
                   "--export", "false"]
    predicted = select(get_parser().parse_args(select_args + ["--latency_model", str(out)]))
    assert predicted["latency"] == "predicted"
    supernet, supernet_config = load_supernet(exp / "config.yaml", exp / "valid.loss.ave.pth")
    for row in predicted["candidates"]:  # select_subnet's latency: 10 s of audio
        mask = supernet.encoder.subnet_mask(row["subnet"])
        assert row["latency_ms"] == pytest.approx(model.predict(mask, 10.0))
    measured = select(get_parser().parse_args(select_args + ["--latency_model", "none"]))
    assert measured["latency"] == "measured"
    two_threads = ["--exp", str(exp), "--max_latency_ms", "1.0", "--threads", "2",
                   "--export", "false", "--latency_model", str(out)]
    with pytest.raises(ValueError, match="profiled with 1 threads, not 2"):
        select(get_parser().parse_args(two_threads))
    elsewhere = LatencyModel.load(out)
    elsewhere.machine = "elsewhere-t1"
    elsewhere.save(out)
    with pytest.raises(ValueError, match="profiled on elsewhere-t1, this is"):
        select(get_parser().parse_args(select_args + ["--latency_model", str(out)]))
    with pytest.raises(ValueError, match="profiled on elsewhere-t1"):
        validate(elsewhere, supernet, supernet_config)
