"""The recipe's output says only what the stages did: no nltk download errors, no
SyntaxWarning from tacotron_cleaner, no traceback, no import-time notices (ESPnet's tools
run through ``espnet_supernet.bin.espnet_tool``, which defers g2p_en and the cleaners)."""

import re
from pathlib import Path
from typing import Dict

from e2e_run import LM_EXP, TINY_ARGS, Prepared

# What an offline machine printed before: "[nltk_data] Error loading cmudict: <urlopen
# error ...>", ".../tacotron_cleaner/__init__.py:78: SyntaxWarning: "is not" with a
# literal", and flash-attn's "Failed to import Flash Attention, using ESPnet default".
NOISE = re.compile(r"^\[nltk_data\]|SyntaxWarning|Traceback \(most recent call last\)|"
                   r"Failed to import Flash Attention", re.MULTILINE)


def _noisy_lines(logs: Dict[str, str]) -> Dict[str, list]:
    """The lines of each log that match NOISE."""
    found = {name: [line for line in text.splitlines() if NOISE.search(line)]
             for name, text in logs.items()}
    return {name: lines for name, lines in found.items() if lines}


def _read(recipe: Path, pattern: str) -> Dict[str, str]:
    paths = sorted(recipe.glob(pattern))
    assert paths, f"no {pattern} in {recipe}: did the stage run?"
    return {str(p.relative_to(recipe)): p.read_text(encoding="utf-8") for p in paths}


def test_noise_pattern_matches_what_the_tools_printed():
    printed = ("[nltk_data] Error loading cmudict: <urlopen error pathsec.urlopen: no\n"
               "/x/tacotron_cleaner/__init__.py:78: SyntaxWarning: \"is not\" with a literal.\n"
               "Traceback (most recent call last):\n"
               "Failed to import Flash Attention, using ESPnet default: No module named 'x'\n")
    assert len(_noisy_lines({"log": printed})["log"]) == 4
    assert not _noisy_lines({"log": "INFO: perplexity 12.3\n[train] loss=1.0, nltk: none\n"})


def test_stages_1_to_10_print_no_import_noise(prepared: Prepared) -> None:
    """Stages 1-10 on the tiny corpus (BPE): run.sh's output (stages 1-5, 8), the LM
    stats and training logs (stages 6, 7) and the feature statistics jobs' (stage 10)."""
    output = prepared.run.output
    for stage in (5, 6, 7, 8, 10):
        assert f"Stage {stage}:" in output, f"stage {stage} did not run\n{prepared.run.tail()}"
    logs = {"run.sh stages 1-10": output,
            **_read(prepared.recipe, "exp/lm_stats_*/logdir/stats.log"),
            **_read(prepared.recipe, f"{LM_EXP}/train.log"),
            **_read(prepared.recipe, "exp/asr_stats_*/logdir/stats.*.log")}
    assert "perplexity" in output and "epoch results" in logs[f"{LM_EXP}/train.log"]
    assert not _noisy_lines(logs), _noisy_lines(logs)


def test_char_token_list_stage_prints_no_import_noise(prepared: Prepared, run_recipe) -> None:
    """Stage 5 with --token_type char: ESPnet's tokenize_text."""
    run = run_recipe(prepared.recipe, *TINY_ARGS, "--token_type", "char", "--stage", "5",
                     "--stop_stage", "5", log_name="run_quiet_char_tokens.log")
    assert run.returncode == 0, run.tail()
    assert "espnet2/bin/tokenize_text.py --token_type char" in run.output  # it ran
    assert (prepared.recipe / "data/token_list/char/tokens.txt").stat().st_size > 0
    assert not _noisy_lines({"run.sh stage 5": run.output}), run.tail()
