"""Fixtures for the end-to-end tests of the supernet recipes (LibriSpeech, TED-LIUM 2).

The recipe never runs in the repository itself (a demo run may be using its data/,
dump/, exp/ and downloads/ directories): every test runs ``run.sh`` in a copy of
``egs2/`` under a temporary directory, laid out like the repository so that
``path.sh`` finds the virtual environment at ``../../../.venv``:

    <tmp>/repo/.venv -> <repository>/.venv
    <tmp>/repo/egs2/TEMPLATE/supernet1/          (supernet.sh, utils/, conf/)
    <tmp>/repo/egs2/librispeech/supernet/        (run.sh, ...; supernet.sh and utils are
                                                  relative links into TEMPLATE)
    <tmp>/repo/egs2/tedlium2/supernet/           (only for recipe_copy(recipe=TEDLIUM2_REL);
                                                  its conf/ links into librispeech's)
"""

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import pytest
from e2e_run import ASR_EXP, TINY_ARGS, Prepared, Trained

REPO = Path(__file__).resolve().parents[2]
RECIPE_REL = Path("egs2/librispeech/supernet")
TEDLIUM2_REL = Path("egs2/tedlium2/supernet")
TEMPLATE_REL = Path("egs2/TEMPLATE/supernet1")
VENV = REPO / ".venv"
# Run outputs (possibly being written by a run in the repository): never copied.
RUN_OUTPUTS = {"data", "dump", "exp", "downloads", "results", "RESULTS.md", "__pycache__"}

TINY_CORPUS_OPTS = (
    "--num_train_utts", "40", "--num_dev_utts", "10", "--num_test_utts", "10",
    "--num_train_speakers", "4", "--num_dev_speakers", "2", "--num_test_speakers", "2",
)  # fmt: skip


def python_exe() -> str:
    """The project's Python (the one path.sh activates), else the running one."""
    exe = VENV / "bin" / "python"
    return str(exe) if exe.exists() else sys.executable


@dataclass
class RecipeRun:
    """A finished command run in a recipe copy.

    Attributes:
        returncode: Exit status.
        output: stdout and stderr, interleaved.
        log: File holding ``output`` (and the command line on its first line).
        seconds: Wall time.
    """

    returncode: int
    output: str
    log: Path
    seconds: float

    def tail(self, chars: int = 20000) -> str:
        """The end of the output, for assertion messages."""
        text = self.output if len(self.output) <= chars else "..." + self.output[-chars:]
        return f"--- {self.log} (exit {self.returncode}, {self.seconds:.0f} s) ---\n{text}"


def _copy_recipe(root: Path, recipe_rel: Path = RECIPE_REL) -> Path:
    """Copies a recipe, the LibriSpeech recipe (whose conf/ other recipes link to) and the
    template into ``root/repo`` and returns the copied ``recipe_rel``."""
    repo = root / "repo"
    shutil.copytree(REPO / TEMPLATE_REL, repo / TEMPLATE_REL, symlinks=True)
    for rel in dict.fromkeys((RECIPE_REL, recipe_rel)):
        src = REPO / rel

        def ignore(directory: str, names: Sequence[str], src: Path = src) -> Sequence[str]:
            if Path(directory) == src:
                return [name for name in names if name in RUN_OUTPUTS]
            return [name for name in names if name == "__pycache__"]

        shutil.copytree(src, repo / rel, symlinks=True, ignore=ignore)
    os.symlink(VENV, repo / ".venv")
    recipe = repo / recipe_rel
    for directory, dirs, files in os.walk(recipe):
        for name in dirs + files:
            link = Path(directory) / name
            if link.is_symlink():
                target = link.resolve()
                assert target.is_relative_to(repo), f"{link} escapes the copy: {target}"
                assert target.exists(), f"{link} is broken in the copy: {target}"
    return recipe


@pytest.fixture(scope="session")
def recipe_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Returns ``make(name="recipe", recipe=RECIPE_REL) -> Path``: a fresh recipe copy.

    Each call copies into a new temporary directory and returns the copy of ``recipe``
    (default ``egs2/librispeech/supernet``; without data/, dump/, exp/, downloads/).
    """

    def make(name: str = "recipe", recipe: Path = RECIPE_REL) -> Path:
        return _copy_recipe(tmp_path_factory.mktemp(name), recipe)

    return make


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny embedded corpus (40/10/10 utterances), made once per session.

    Returns:
        The directory that contains ``LibriSpeech/`` (what LIBRISPEECH names).
    """
    outdir = tmp_path_factory.mktemp("tiny_corpus") / "corpus"
    result = subprocess.run(
        [python_exe(), "-m", "espnet_supernet.bin.make_embedded_corpus",
         "--outdir", str(outdir), *TINY_CORPUS_OPTS],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"make_embedded_corpus failed:\n{result.stderr}"
    assert (outdir / "LibriSpeech" / "train-clean-100").is_dir(), result.stderr
    return outdir


def run_in(
    cwd: Path,
    argv: Sequence[str],
    log: Path,
    env: Optional[Dict[str, str]] = None,
    timeout: float = 1200,
) -> RecipeRun:
    """Runs ``argv`` in ``cwd`` with stdout+stderr going to ``log``.

    Args:
        cwd: Working directory (a recipe copy).
        argv: Command.
        log: Output file (overwritten); its first line is the command.
        env: Variables added to (or replacing) the environment.
        timeout: Seconds before the command is killed.

    Returns:
        The finished run; the output is printed too, so pytest shows it on failure.
    """
    full_env = {**os.environ, "cmd_backend": "local", **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as f:
        f.write("# " + " ".join(argv) + "\n")
        f.flush()
        try:
            proc = subprocess.run(
                list(argv), cwd=cwd, env=full_env, stdout=f, stderr=subprocess.STDOUT,
                timeout=timeout, check=False,
            )  # fmt: skip
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = -9
    seconds = time.monotonic() - start
    output = log.read_text(encoding="utf-8", errors="replace")
    if returncode == -9:
        output += f"\n[test] killed after {timeout} s\n"
    run = RecipeRun(returncode, output, log, seconds)
    print(run.tail())
    return run


@pytest.fixture(scope="session")
def run_recipe() -> Callable[..., RecipeRun]:
    """Returns ``run(recipe_dir, *args, corpus=None, env=None, log_name="run.log",
    timeout=1200)``.

    Runs ``./run.sh *args`` in the recipe copy with ``LIBRISPEECH=corpus`` (if given) and
    the variables of ``env`` (e.g. ``{"TEDLIUM2": ...}``), writing the output to
    ``<recipe_dir>/<log_name>``.
    """

    def run(
        recipe: Path,
        *args: str,
        corpus: Optional[Path] = None,
        env: Optional[Dict[str, str]] = None,
        log_name: str = "run.log",
        timeout: float = 1200,
    ) -> RecipeRun:
        variables = {} if corpus is None else {"LIBRISPEECH": str(corpus)}
        variables.update(env or {})
        return run_in(recipe, ["./run.sh", *args], recipe / log_name, env=variables,
                      timeout=timeout)

    return run


@pytest.fixture(scope="session")
def prepared(recipe_copy, tiny_corpus, run_recipe) -> Prepared:
    """A recipe copy with stages 1-10 done on the tiny corpus (data, dump, BPE, LM,
    feature statistics): where every recipe test trains its own models.

    With ``pytest -n`` (tools/test.sh) each worker that runs recipe tests makes its own.
    """
    recipe = recipe_copy("e2e")
    run = run_recipe(recipe, *TINY_ARGS, "--stop_stage", "10", corpus=tiny_corpus,
                     log_name="run_1-10.log")
    if run.returncode != 0:
        pytest.fail(f"./run.sh (stages 1-10) failed\n{run.tail()}")
    return Prepared(recipe, tiny_corpus, run)


@pytest.fixture(scope="session")
def trained(prepared, run_recipe) -> Trained:
    """``prepared`` after stages 11-14 of the tiny supernet (training, decoding every
    size, scoring, export)."""
    run = run_recipe(prepared.recipe, *TINY_ARGS, "--stage", "11", corpus=prepared.corpus,
                     log_name="run_11-14.log")
    if run.returncode != 0:
        pytest.fail(f"./run.sh (stages 11-14) failed\n{run.tail()}")
    train_log = prepared.recipe / ASR_EXP / "train.log"
    assert train_log.is_file(), run.tail()
    return Trained(prepared.recipe, prepared.corpus, prepared.run, run,
                   train_log.read_text(encoding="utf-8"))
