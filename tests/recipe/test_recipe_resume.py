"""Kill stage 11 in the middle of an epoch (SIGKILL to every process of the run, as a
pre-emption does) and re-run the same ``./run.sh`` command: training must resume from the
last finished epoch and end exactly where an uninterrupted run of the same command ends.

Two cases, each trained from the ``prepared`` fixture for 2 epochs of 8 updates
(``--num_iters_per_epoch 8``, seed fixed) and killed once train.log shows the 2nd update of
epoch 2:

* ``sandwich``: the tiny static supernet with ``largest_warmup_steps=10``, so the warm-up
  (only the largest size trains) ends in the killed epoch;
* ``topk``: Simple-Top-k selection whose step 1 lasts 14 updates: the kill falls in step 1
  and the masks freeze in the re-run epoch, before its 7th update.

The kill takes the whole process tree of ``./run.sh`` at once, as a pre-emption does (Slurm
kills every process of the job): ``utils/run.pl`` runs each job in a session of its own, so
a SIGKILL to run.sh's process group alone would leave the trainer running.

ESPnet re-runs the killed epoch from ``checkpoint.pth`` with the epoch's own seed and batch
order (``set_all_random_seed(seed + epoch)``), and the model's counters (``sandwich_step``,
the selection's ``total_steps`` / ``frozen`` and masks) are buffers of that checkpoint, so on
CPU at one thread the resumed run is bit-identical to the uninterrupted one: the test
asserts equal weights, optimizer states, per-size validation losses and CTC posteriors
(tolerance 0; GPU kernels are not deterministic, this holds for the CPU runs here).
The six stage-11 runs (four at a time) add about 1.5 min to the ``prepared`` fixture.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
import soundfile
import torch
import yaml

from e2e_run import SIZES, TINY_ARGS

ITERS, EPOCHS, KILL_AT = 8, 2, 2  # updates per epoch, epochs, kill after epoch 2's 2nd
TOTAL = ITERS * EPOCHS
SELECTION_STEPS = ITERS + 6  # step 1 of the topk case: 1 epoch and 6 updates
TRAIN_ARGS = f"--max_epoch {EPOCHS} --num_iters_per_epoch {ITERS} --log_interval 1 --seed 7"
CASES = {
    "sandwich": "--model_conf largest_warmup_steps=10",
    "topk": "",  # the selection is in the config (see config_of)
}
TINY = "conf/tuning/train_supernet_conformer_tiny.yaml"
RUNS = ("straight", "resumed")  # uninterrupted; killed, then re-run
KILL_MARK = f"2epoch:train:{KILL_AT}-{KILL_AT}batch:"


def config_of(recipe: Path, case: str) -> str:
    """The case's training config: the tiny one, plus Simple-Top-k for ``topk``."""
    if case != "topk":
        return TINY
    conf = yaml.safe_load((recipe / TINY).read_text())
    conf.update(selection="simple_topk", selection_conf={"selection_steps": SELECTION_STEPS})
    path = recipe / "conf/tuning/train_resume_topk_tiny.yaml"
    path.write_text(yaml.safe_dump(conf))
    return str(path.relative_to(recipe))


def stage11(recipe: Path, case: str, tag: str) -> List[str]:
    args = list(TINY_ARGS)
    args[args.index("--asr_config") + 1] = config_of(recipe, case)
    return ["./run.sh", *args, "--stage", "11", "--stop_stage", "11", "--asr_tag", tag,
            "--asr_args", f"{TRAIN_ARGS} {CASES[case]}"]


def start(recipe: Path, argv: List[str], log: Path) -> subprocess.Popen:
    """Starts ``argv`` in the recipe copy, output to ``log``; one thread, whose CPU
    kernels give the same result on every run (the bit-identity below relies on it)."""
    with open(log, "a") as out:
        return subprocess.Popen(argv, cwd=recipe, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "cmd_backend": "local",
                                     "OMP_NUM_THREADS": "1"})


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def process_tree(root: int) -> Set[int]:
    """``root`` and all its descendants (parents read from /proc/<pid>/stat)."""
    children: Dict[int, List[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo += children.get(pid, [])
    return tree


def signal_all(pids: Set[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def kill_tree(root: int) -> None:
    """SIGKILLs ``root`` and every descendant at once: SIGSTOP first (until no new process
    appears), so that no process reacts to another's death or escapes to init."""
    stopped: Set[int] = set()
    while new := process_tree(root) - stopped:
        signal_all(new, signal.SIGSTOP)
        stopped |= new
    signal_all(stopped, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in stopped):
        assert time.monotonic() < deadline, "processes of the killed stage 11 survive SIGKILL"
        time.sleep(0.05)


def run_log(exp: Path) -> Path:
    """The output of ``./run.sh`` for ``exp`` (both runs of a killed one, appended)."""
    return exp.parent.parent / f"run_{exp.name}.log"


def reached_kill_point(proc: subprocess.Popen, train_log: Path) -> bool:
    """Whether ``train_log`` shows update KILL_AT of epoch 2 (fails if the run ended)."""
    if train_log.is_file() and KILL_MARK in train_log.read_text(errors="replace"):
        return True
    assert proc.poll() is None, f"stage 11 ended before the kill:\n{train_log.read_text()}"
    return False


@pytest.fixture(scope="module")
def runs(prepared) -> Dict[str, Dict]:
    """{case: {"straight": exp, "resumed": exp, "killed_log": text}}.

    For each case, at the same time: an uninterrupted stage 11 and one killed in epoch 2,
    then re-run with the same command.
    """
    recipe, out = prepared.recipe, {}
    procs: Dict[Tuple[str, str], subprocess.Popen] = {}
    try:
        for case in CASES:
            tags = {run: f"resume_{case}_{run}" for run in RUNS}
            out[case] = {run: recipe / "exp" / f"asr_{tag}" for run, tag in tags.items()}
            out[case]["argv"] = {run: stage11(recipe, case, tag) for run, tag in tags.items()}
            for run in RUNS:
                procs[case, run] = start(recipe, out[case]["argv"][run], run_log(out[case][run]))
        deadline = time.monotonic() + 600
        victims = set(CASES)
        while victims:
            for case in sorted(victims):
                exp, proc = out[case]["resumed"], procs[case, "resumed"]
                if reached_kill_point(proc, exp / "train.log"):
                    kill_tree(proc.pid)
                    proc.wait()
                    out[case]["killed_log"] = (exp / "train.log").read_text(errors="replace")
                    procs[case, "resumed"] = start(recipe, out[case]["argv"]["resumed"],
                                                   run_log(exp))
                    victims.remove(case)
            assert time.monotonic() < deadline, f"no {KILL_MARK} in {victims} after 600 s"
            time.sleep(0.05)
        for (case, run), proc in procs.items():
            log = run_log(out[case][run]).read_text(errors="replace")
            assert proc.wait(timeout=600) == 0, log[-20000:]
    finally:
        for proc in procs.values():  # a failed run leaves nothing behind
            if proc.poll() is None:
                kill_tree(proc.pid)
                proc.wait()
    return out


def checkpoint(exp: Path) -> dict:
    return torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)


def valid_losses(state: dict) -> Dict[str, float]:
    stats = state["reporter"]["stats"][EPOCHS]["valid"]
    return {size: stats[f"loss_{size}"] for size in SIZES}


@pytest.mark.parametrize("case", CASES)
def test_kill_fell_in_epoch_2_and_the_rerun_resumed_it(runs, case):
    killed = runs[case]["killed_log"]
    assert f"1epoch:train:{ITERS}-{ITERS}batch:" in killed and "2epoch:train:1-1batch:" in killed
    assert f"2epoch:train:{ITERS}-{ITERS}batch:" not in killed  # killed in the middle of epoch 2
    log = (runs[case]["resumed"] / "train.log").read_text()
    assert re.search(r"resumed using \S*checkpoint\.pth", log), log[-5000:]
    assert "2/2epoch started" in log and "1/2epoch started" not in log
    # every update of the re-run epoch, once each
    assert [int(b) for b in re.findall(r"2epoch:train:(\d+)-\1batch:", log)] == list(
        range(1, ITERS + 1))
    assert not list(runs[case]["resumed"].glob(".*.tmp"))


@pytest.mark.parametrize("case", CASES)
def test_resumed_run_ends_with_the_full_number_of_updates(runs, case):
    state = checkpoint(runs[case]["resumed"])
    assert state["reporter"]["epoch"] == EPOCHS
    assert state["reporter"]["stats"][EPOCHS]["train"]["total_count"] == TOTAL
    assert int(state["model"]["sandwich_step"]) == TOTAL
    assert os.readlink(runs[case]["resumed"] / "latest.pth") == f"{EPOCHS}epoch.pth"
    latest = torch.load(runs[case]["resumed"] / "latest.pth", map_location="cpu")
    assert int(latest["sandwich_step"]) == TOTAL


def test_selection_step1_ends_at_its_step_and_freezes_the_learned_masks(runs):
    exp = runs["topk"]["resumed"]
    assert "selection frozen" not in runs["topk"]["killed_log"]  # killed in step 1
    log = (exp / "train.log").read_text()
    frozen = log.index("selection frozen")  # step 14 = the 7th update of epoch 2
    assert log.index("2epoch:train:6-6batch:") < frozen < log.index("2epoch:train:7-7batch:")
    assert log.count("selection frozen") == 1
    model = checkpoint(exp)["model"]
    assert int(model["selection.total_steps"]) == SELECTION_STEPS
    assert bool(model["selection.frozen"])
    report = yaml.safe_load((exp / "selection.yaml").read_text())
    table = model["encoder.subnet_mask_table"].tolist()
    assert [report["sizes"][s]["mask"] for s in SIZES] == table
    assert [sum(row) for row in table] == [4, 8]
    straight = yaml.safe_load((runs["topk"]["straight"] / "selection.yaml").read_text())
    assert report["sizes"] == straight["sizes"] and report["scores"] == straight["scores"]


@pytest.mark.parametrize("case", CASES)
def test_resumed_run_equals_the_uninterrupted_one(runs, case):
    resumed, straight = checkpoint(runs[case]["resumed"]), checkpoint(runs[case]["straight"])
    assert valid_losses(resumed) == valid_losses(straight)  # bit-identical on CPU
    assert resumed["model"].keys() == straight["model"].keys()
    different = [k for k, v in resumed["model"].items()
                 if not torch.equal(v, straight["model"][k])]
    assert different == []
    for mine, ref in zip(resumed["optimizers"], straight["optimizers"], strict=True):
        assert mine["state"].keys() == ref["state"].keys()
        for i, state in mine["state"].items():
            assert all(torch.equal(v, ref["state"][i][k]) for k, v in state.items()), i


@pytest.mark.parametrize("case", CASES)
def test_final_checkpoint_decodes_every_size(runs, case, prepared, monkeypatch):
    """Stage 12's model file decodes with each size; the resumed and the uninterrupted
    models give the same CTC posteriors (a 16-update model's greedy text is empty)."""
    from espnet_supernet.decode.speech2text import speech2text

    monkeypatch.chdir(prepared.recipe)  # config.yaml paths are relative to the recipe
    wav = (prepared.recipe / "dump/raw/test_clean/wav.scp").read_text().split()[1]
    speech = torch.tensor(soundfile.read(wav)[0], dtype=torch.float32)
    posteriors = {}
    for size in SIZES:
        for run in RUNS:
            exp = runs[case][run]
            s2t = speech2text(size, ctc_greedy=True, asr_train_config=str(exp / "config.yaml"),
                              asr_model_file=str(exp / "valid.loss.ave.pth"), device="cpu")
            (text, *_), *_ = s2t(speech)  # the n-best list's best (text, tokens, ...)
            assert isinstance(text, str)
            with torch.no_grad():
                enc, _ = s2t.asr_model.encode(speech[None], torch.tensor([len(speech)]))
                posteriors[size, run] = s2t.asr_model.ctc.log_softmax(enc)
        assert torch.isfinite(posteriors[size, "resumed"]).all()
        assert torch.equal(posteriors[size, "resumed"], posteriors[size, "straight"]), size
    assert not torch.equal(posteriors[SIZES[0], "resumed"], posteriors[SIZES[-1], "resumed"])
