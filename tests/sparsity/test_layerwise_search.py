"""Per-layer sparsity search: the evolutionary and greedy algorithms and
``bin/sparsity_search``."""

import numpy as np
import pytest
import soundfile
import yaml

from espnet_supernet.bin.sparsity_search import main as search_main
from espnet_supernet.sparsity.layerwise_search import (
    evolutionary_layerwise_search,
    greedy_layerwise_search,
    uniform_within_budget,
)
from tiny_models import make_task_supernet

LEVELS = [0.0, 0.5, 0.8]
SENSITIVITY = {0: 10.0, 1: 0.1, 2: 0.1, 3: 10.0}  # blocks 1 and 2 barely matter


def params_of(config):  # 100 prunable weights per block
    return sum(round(100 * (1 - LEVELS[i])) for i in config.values())


def score_of(config):
    return sum(SENSITIVITY[b] * LEVELS[i] ** 2 for b, i in config.items())


def test_greedy_search_beats_uniform_on_a_constructed_case():
    budget = 200  # half of the 400 weights
    uniform = uniform_within_budget(list(SENSITIVITY), 3, params_of, budget)
    assert uniform == {b: 1 for b in SENSITIVITY} and score_of(uniform) == pytest.approx(5.05)
    result = greedy_layerwise_search(list(SENSITIVITY), 3, params_of, score_of, budget)
    assert result.params == params_of(result.config) <= budget
    assert result.config[1] == result.config[2] == 2  # the insensitive blocks go sparsest
    assert result.score < 0.6 * score_of(uniform)
    assert result.history[0]["params"] == 400 and len(result.history) > 2
    with pytest.raises(ValueError, match="below the sparsest"):
        greedy_layerwise_search(list(SENSITIVITY), 3, params_of, score_of, 50)


def test_evolution_finds_the_optimum_of_a_constructed_case():
    """8 blocks of 3 levels, half of them insensitive: the best config within the budget
    puts exactly the insensitive blocks at the sparsest level. The evolution finds it
    (exhaustive: 3^8 = 6561 configs) scoring far fewer, and never ends worse than the
    uniform level it starts from."""
    import itertools

    sensitivity = {b: (10.0 if b % 2 else 0.1) for b in range(8)}

    def params8(config):
        return sum(round(100 * (1 - LEVELS[i])) for i in config.values())

    def score8(config):
        return sum(sensitivity[b] * LEVELS[i] ** 2 for b, i in config.items())

    budget = 500  # of 800
    feasible = [dict(enumerate(c)) for c in itertools.product(range(3), repeat=8)
                if params8(dict(enumerate(c))) <= budget]
    optimum = min(score8(c) for c in feasible)
    calls = []
    result = evolutionary_layerwise_search(
        list(sensitivity), 3, params8, lambda c: calls.append(1) or score8(c), budget,
        population=16, generations=12, seed=0)
    assert result.params == params8(result.config) <= budget
    assert result.score == pytest.approx(optimum)
    assert all(result.config[b] == 2 for b in range(0, 8, 2))
    assert len(calls) < len(feasible) / 10  # each config scored once
    uniform = uniform_within_budget(list(sensitivity), 3, params8, budget)
    assert result.history[0]["score"] <= score8(uniform)
    assert [h["score"] for h in result.history] == sorted(
        (h["score"] for h in result.history), reverse=True)  # elitism: never worse
    again = evolutionary_layerwise_search(list(sensitivity), 3, params8, score8, budget,
                                          population=16, generations=12, seed=0)
    assert again.config == result.config  # deterministic given the seed
    with pytest.raises(ValueError, match="below the sparsest"):
        evolutionary_layerwise_search(list(sensitivity), 3, params8, score8, 100)
    with pytest.raises(ValueError, match="population >= 2"):
        evolutionary_layerwise_search(list(sensitivity), 3, params8, score8, budget,
                                      population=1)


def test_search_cli_on_generated_audio(tmp_path):
    model, config, path = make_task_supernet(
        tmp_path, {"sparsity": "omni", "token_type": "char",
                   "sparsity_conf": {"levels": LEVELS, "warmup_steps": 0},
                   "model_conf": {"ctc_weight": 0.5, "per_size_ctc": False}})
    (tmp_path / "tokens.txt").write_text("\n".join(config["token_list"]) + "\n")
    rng = np.random.default_rng(0)
    wav_scp, text = [], []
    for i in range(6):
        wav = tmp_path / f"u{i}.wav"
        soundfile.write(wav, rng.standard_normal(8000 + 800 * i).astype(np.float32) * 0.1,
                        16000)
        wav_scp.append(f"u{i} {wav}")
        text.append(f"u{i} {'abcd'[i % 4]}b{'ca'[i % 2]}")
    (tmp_path / "wav.scp").write_text("\n".join(wav_scp) + "\n")
    (tmp_path / "text").write_text("\n".join(text) + "\n")
    args = ["--asr_train_config", str(path), "--asr_model_file", str(tmp_path / "model.pth"),
            "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
            "--data_path_and_name_and_type", f"{tmp_path / 'text'},text,text",
            "--num_utts", "4", "--batch_size", "2", "--output", str(tmp_path / "out.yaml")]
    search_main(args + ["--budget", "0.6", "--population", "4", "--generations", "2"])
    out = yaml.safe_load((tmp_path / "out.yaml").read_text())
    assert out["encoder_params"] <= out["budget"] == int(0.6 * out["dense_encoder_params"])
    assert out["num_utts"] == 4 and set(out["block_sparsity"]) == {0, 1}
    assert set(out["block_sparsity"].values()) <= set(LEVELS)
    greedy, evolution = out["searches"]["greedy"], out["searches"]["evolutionary"]
    assert greedy["history"][0]["encoder_params"] == out["dense_encoder_params"]
    assert np.isfinite(out["dev_loss"]) and np.isfinite(out["uniform"]["dev_loss"])
    assert out["dev_loss"] == min(greedy["dev_loss"], evolution["dev_loss"])
    assert out["method"] in ("greedy", "evolutionary")
    assert evolution["dev_loss"] <= out["uniform"]["dev_loss"] + 1e-6
    assert evolution["encoder_params"] <= out["budget"] and evolution["scored"] >= 1
    assert len(evolution["history"]) == 3  # the first population and 2 generations
    with pytest.raises(SystemExit, match="outside what the trained levels reach"):
        search_main(args + ["--budget", "0.05"])
