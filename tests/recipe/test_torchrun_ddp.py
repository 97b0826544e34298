"""DDP through ESPnet's own trainer: ``torchrun`` with two CPU ranks (gloo) trains the
tiny supernet of the end-to-end run for two updates.

Checks what a cluster user relies on: both ranks start, rank 0 logs where every rank
runs (the check that a multi-node run uses every node), the ranks' stats all-reduce
(ESPnet averages the stat dicts; different keys would hang or fail), every size is
validated, a checkpoint is written, and DDP does not warn about gradient layouts.
"""

import math
import re
from typing import Dict

import yaml
from conftest import python_exe, run_in
from e2e_run import ASR_EXP, SIZES, TRAIN_SET, VALID_SET

# Keys ESPnet writes into config.yaml that its parser does not take back.
NOT_ARGUMENTS = ("required", "distributed", "version", "print_config", "config")


def epoch_stats(part: str) -> Dict[str, float]:
    """``{key: value}`` of one part of ESPnet's "Nepoch results" line ("k=v, k=v, ...")."""
    stats = {}
    for item in part.split(", "):
        key, sep, value = item.strip().partition("=")
        if sep and key != "time":  # "time=0.25 seconds"
            stats[key] = float(value)
    return stats


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
    # ESPnet's log prefix "[host:rank/world]": rank 0 of a world of 2 logs (the others
    # log errors only)
    prefixes = set(re.findall(r"^\[([\w-]+):(\d+)/(\d+)\]", run.output, re.M))
    assert {world for _, _, world in prefixes} == {"2"}, prefixes
    hosts = [host for host, rank, _ in prefixes if rank == "0"]
    assert len(hosts) == 1, prefixes
    host = hosts[0]
    assert f"DDP: 2 ranks on 1 host: {host} ranks 0-1 (cpu, cpu)" in run.output
    # every mini-batch is split over the 2 ranks: rank 0 reads its half of each set
    for mode, dset in (("train", TRAIN_SET), ("valid", VALID_SET)):
        total = len((recipe / "dump/raw" / dset / "text").read_text().splitlines())
        loaded = re.findall(rf"only loading (\d+) keys from dump/raw/{dset}/text", run.output)
        assert len(loaded) == 1 and total / 2 <= int(loaded[0]) < total, (mode, loaded, total)
    valid_batches = re.findall(r"\[valid\] mini-batch sizes summary: N-batch=(\d+)", run.output)
    assert len(valid_batches) == 1, run.tail()
    assert run.output.count("epoch started") == 1 and "1/1epoch started" in run.output
    results = re.findall(r"\] .*INFO: 1epoch results: \[train\] (.*), \[valid\] (.*)$",
                         run.output, re.M)
    assert len(results) == 1, run.tail()
    train, valid = (epoch_stats(part) for part in results[0])
    assert train["total_count"] == 2  # two updates, counted once (not per rank)
    assert valid["total_count"] == int(valid_batches[0])  # every dev batch
    for stat in ("loss", "loss_max", "loss_min"):
        assert math.isfinite(train[stat]) and train[stat] > 0, (stat, train)
    for size in SIZES:  # every size validated, its stats averaged over the ranks
        for stat in (f"loss_{size}", f"loss_ctc_{size}", f"loss_att_{size}"):
            assert math.isfinite(valid[stat]) and valid[stat] > 0, (stat, valid)
        assert 0 <= valid[f"acc_{size}"] <= 1 and 0 <= valid[f"cer_ctc_{size}"], valid
    assert math.isfinite(valid["loss"]), valid
    assert "The training was finished at 1 epochs" in run.output
    assert (out / "1epoch.pth").is_file() and (out / "checkpoint.pth").is_file()
    assert "Grad strides do not match" not in run.output
