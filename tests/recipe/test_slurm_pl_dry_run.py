"""Tests of ``egs2/TEMPLATE/supernet1/utils/slurm.pl`` without a Slurm cluster.

``--dry-run`` writes the batch script and prints the sbatch command line; the
batch script itself is then run with bash, as a compute node would.
"""

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

TEMPLATE = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/supernet1"
SLURM_PL = TEMPLATE / "utils/slurm.pl"
DATE = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d .+ \d{4}"


def slurm_pl(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs slurm.pl in ``cwd`` and returns the finished process."""
    return subprocess.run(
        [str(SLURM_PL), *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def dry_run(cwd: Path, *args: str) -> List[str]:
    """Returns the sbatch command line that ``slurm.pl --dry-run`` prints, split."""
    result = slurm_pl(cwd, "--dry-run", *args)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def has(words: List[str], *sequence: str) -> bool:
    """Tells whether ``sequence`` occurs contiguously in ``words``."""
    n = len(sequence)
    return any(words[i : i + n] == list(sequence) for i in range(len(words) - n + 1))


def run_batch_script(cwd: Path, script: str, task: Optional[int]) -> int:
    """Runs a batch script like Slurm would for one array task; returns its status."""
    env: Dict[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    if task is not None:
        env["SLURM_ARRAY_TASK_ID"] = str(task)
    return subprocess.run(
        ["bash", script], cwd=cwd, env=env, capture_output=True, check=False, timeout=60
    ).returncode


def test_gpu_threads_mem_array(tmp_path: Path) -> None:
    words = dry_run(
        tmp_path, "--gpu", "2", "--num-threads", "4", "--mem", "8G",
        "JOB=1:3", "exp/log/dec.JOB.log", "echo", "JOB",
    )
    assert words[0] == "sbatch"
    assert "--gres=gpu:2" in words
    assert has(words, "--cpus-per-task", "4")
    assert has(words, "--mem", "8G")
    assert has(words, "--job-name", "dec")
    assert "--array=1-3" in words
    assert "--parsable" in words
    assert "--output=exp/log/q/dec.%A_%a.out" in words
    assert words[-1] == "exp/log/q/dec.sh"
    assert (tmp_path / "exp/log/q/dec.sh").is_file()
    assert "srun" not in words


def test_defaults_without_gpu(tmp_path: Path) -> None:
    words = dry_run(tmp_path, "exp/log/train.log", "python3", "train.py")
    assert not any(w.startswith("--gres") for w in words)
    assert has(words, "--cpus-per-task", "1")
    assert not any(w.startswith("--array") for w in words)
    assert "--output=exp/log/q/train.%j.out" in words
    assert not any(w == "--mem" for w in words)


def test_num_threads_underscore_and_mem_zero(tmp_path: Path) -> None:
    words = dry_run(tmp_path, "--num_threads", "8", "--mem", "0", "x.log", "true")
    assert has(words, "--cpus-per-task", "8")
    assert "--mem" not in words


def test_max_jobs_run_throttles_the_array(tmp_path: Path) -> None:
    words = dry_run(tmp_path, "--max-jobs-run", "2", "JOB=3:10", "l/x.JOB.log", "true")
    assert "--array=3-10%2" in words


def test_time_partition_nodes_name_like_espnet_launch(tmp_path: Path) -> None:
    # The options espnet2.bin.launch passes for --num_nodes 2 --ngpu 4.
    words = dry_run(
        tmp_path, "--name", "asr_x", "--time", "2:00:00", "--partition", "gpu",
        "--gpu", "4", "--num_threads", "4", "--num_nodes", "2",
        "exp/asr_x/train.log", "srun", "--export=ALL", "python3", "-m", "x",
    )
    assert has(words, "--job-name", "asr_x")
    assert has(words, "--time", "2:00:00")
    assert has(words, "--partition", "gpu")
    assert has(words, "--nodes", "2")
    assert "--gres=gpu:4" in words
    assert "srun" not in words  # srun only runs inside the job sbatch creates
    assert "srun --export=ALL python3 -m x" in (tmp_path / "exp/asr_x/q/train.sh").read_text()


def test_unknown_option_is_an_error(tmp_path: Path) -> None:
    result = slurm_pl(tmp_path, "--dry-run", "--colour", "blue", "x.log", "true")
    assert result.returncode == 1
    assert "--colour" in result.stderr


def test_custom_config(tmp_path: Path) -> None:
    (tmp_path / "my.conf").write_text(
        "# site config\n"
        "command sbatch --account=abc\n"
        "option gpu=* --partition gpu --gres=gpu:$0  # GPU nodes\n"
        "option gpu=0 --partition cpu\n"
        "default gpu=0\n"
    )
    cpu = dry_run(tmp_path, "--config", "my.conf", "x.log", "true")
    assert cpu[:4] == ["sbatch", "--account=abc", "--partition", "cpu"]
    gpu = dry_run(tmp_path, "--config", "my.conf", "--gpu", "1", "x.log", "true")
    assert gpu[:5] == ["sbatch", "--account=abc", "--partition", "gpu", "--gres=gpu:1"]
    result = slurm_pl(tmp_path, "--dry-run", "--config", "my.conf", "--mem", "1G", "x.log", "true")
    assert result.returncode == 1 and "--mem" in result.stderr


def test_shipped_config_matches_builtin(tmp_path: Path) -> None:
    args = ["--gpu", "1", "--mem", "2G", "--time", "1:00", "JOB=1:2", "l/a.JOB.log", "true"]
    builtin = dry_run(tmp_path, *args)
    (tmp_path / "conf").mkdir()
    shutil.copy(TEMPLATE / "conf/slurm.conf", tmp_path / "conf/slurm.conf")
    assert dry_run(tmp_path, *args) == builtin  # conf/slurm.conf is picked up by default
    assert dry_run(tmp_path, "--config", "conf/slurm.conf", *args) == builtin


def test_batch_script_writes_run_pl_logs(tmp_path: Path) -> None:
    words = dry_run(
        tmp_path, "--num-threads", "2", "JOB=1:3", "exp/log/b.JOB.log",
        "bash", "-c", "echo task JOB 'with spaces'; exit $((JOB - 1))",
    )
    script = words[-1]
    assert run_batch_script(tmp_path, script, 1) == 0
    assert run_batch_script(tmp_path, script, 3) == 2
    lines = (tmp_path / "exp/log/b.1.log").read_text().splitlines()
    assert lines[0] == "# bash -c 'echo task 1 '\"'\"'with spaces'\"'\"'; exit $((1 - 1))'"
    assert re.fullmatch(rf"# Started at {DATE}", lines[1])
    assert lines[2:4] == ["#", "task 1 with spaces"]
    assert re.fullmatch(r"# Accounting: time=\d+ threads=2", lines[4])
    assert re.fullmatch(rf"# Ended \(code 0\) at {DATE}", lines[5])
    assert "# Ended (code 2) at " in (tmp_path / "exp/log/b.3.log").read_text()
    done_files = (tmp_path / "exp/log/q").glob("done.*")
    done = {p.name.rsplit(".", 1)[1]: p.read_text().strip() for p in done_files}
    assert done == {"1": "0", "3": "2"}
    assert not (tmp_path / "exp/log/b.2.log").exists()


def test_single_job_script_needs_no_array_id(tmp_path: Path) -> None:
    script = dry_run(tmp_path, "l/one.log", "echo", "hi")[-1]
    assert run_batch_script(tmp_path, script, None) == 0
    assert (tmp_path / "l/one.log").read_text().splitlines()[3] == "hi"
