"""The Slurm backend against a real (local, single-node) Slurm: collect stats, a short
training and decoding of every size go through ``cmd_backend=slurm`` (``utils/slurm.pl``
submitting with ``sbatch``); their outputs, the jobs' logs and the batch scripts are
checked (one size decoded, to keep the suite short). Skips, saying why, only where Slurm cannot start (not installed, not root).

Starts from the ``prepared`` fixture (data, BPE).
"""

import re

import pytest
from conftest import run_in
from e2e_run import SIZES, TINY_ARGS
from local_slurm import LocalSlurm


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    reason = cluster.start()
    if reason is not None:
        pytest.skip(f"no local Slurm: {reason}")
    yield cluster
    cluster.stop()


def test_stages_10_to_13_through_slurm(prepared, slurm):
    recipe = prepared.recipe
    args = list(TINY_ARGS)
    args[args.index("--inference_config") + 1] = "conf/decode_ctc_greedy.yaml"
    run = run_in(recipe, ["./run.sh", *args, "--use_lm", "false", "--test_sets", "test_clean",
                          "--stage", "10", "--stop_stage", "13", "--asr_tag", "slurm",
                          "--asr_stats_dir", "exp/asr_stats_slurm",
                          "--asr_args", "--max_epoch 1", "--subnets", SIZES[0]],
                 recipe / "run_slurm.log", env={"cmd_backend": "slurm", **slurm.env()})
    assert run.returncode == 0, run.tail()
    assert slurm.queue().strip() == ""  # every job has left the queue
    stats, exp = recipe / "exp/asr_stats_slurm", recipe / "exp/asr_slurm"
    assert (stats / "train/feats_stats.npz").is_file()
    # each runner call wrote a batch script and got Slurm's own output back
    for qdir in (stats / "logdir/q", exp / "q", exp / "decode_ctc_greedy_sizes/test_clean/logdir/q"):
        scripts, outs = list(qdir.glob("*.sh")), list(qdir.glob("*.out"))
        assert scripts and outs, qdir
        assert all(re.match(r"# Running on \S+ as job \d+", o.read_text()) for o in outs)
        for script in scripts:  # no GPU asked for: the jobs were given none
            assert "gres" not in script.read_text()
    log = (exp / "train.log").read_text()
    assert re.search(r"1epoch results: \[train\].*loss_max=", log), log[-2000:]
    results = (exp / "RESULTS.md").read_text()
    assert re.search(rf"\| {SIZES[0]} \| test_clean \| .* \| \d+\.\d+ \|", results), results
