"""DDP through ESPnet's own trainer: ``torchrun`` with two CPU ranks (gloo) trains the
tiny supernet of the end-to-end run for two updates.

Checks what a cluster user relies on: both ranks start, rank 0 logs where every rank
runs (the check that a multi-node run uses every node), the ranks' stats all-reduce
(ESPnet averages the stat dicts; different keys would hang or fail), every size is
validated, a checkpoint is written, and DDP does not warn about gradient layouts.
"""

import re

import yaml
from conftest import python_exe, run_in
from e2e_run import ASR_EXP, SIZES

# Keys ESPnet writes into config.yaml that its parser does not take back.
NOT_ARGUMENTS = ("required", "distributed", "version", "print_config", "config")


def test_two_cpu_ranks_through_torchrun(trained):
    recipe = trained.recipe
    config = yaml.safe_load((recipe / ASR_EXP / "config.yaml").read_text())
    for key in NOT_ARGUMENTS:
        config.pop(key, None)
    conf = recipe / "exp" / "torchrun_config.yaml"
    conf.write_text(yaml.safe_dump(config))
    out = recipe / "exp" / "asr_torchrun"
    run = run_in(recipe, [
        python_exe(), "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "espnet_supernet.bin.asr_train", "--config", str(conf),
        "--output_dir", str(out), "--ngpu", "0", "--dist_backend", "gloo",
        "--multiprocessing_distributed", "false", "--max_epoch", "1",
        "--num_iters_per_epoch", "2", "--resume", "false",
    ], out.with_suffix(".log"), env={"OMP_NUM_THREADS": "1"}, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.tail()
    host = re.search(r"\[([\w-]+):0/2\]", run.output)
    assert host, run.tail()  # ESPnet's rank-0 log prefix: host:rank/world
    assert f"DDP: 2 ranks on 1 host: {host.group(1)} ranks 0-1 (cpu, cpu)" in run.output
    results = re.search(r"1epoch results: .*", run.output).group(0)
    assert "total_count=2" in results  # two updates, counted once (not per rank)
    for size in SIZES:
        assert f"[valid] loss_{size}=" in results or f"loss_{size}=" in results
    assert (out / "1epoch.pth").is_file() and (out / "checkpoint.pth").is_file()
    assert "Grad strides do not match" not in run.output
