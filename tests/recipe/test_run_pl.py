"""Tests of the local job runner ``egs2/TEMPLATE/supernet1/utils/run.pl``."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

RUN_PL = Path(__file__).resolve().parents[2] / "egs2/TEMPLATE/supernet1/utils/run.pl"
DATE = r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d .+ \d{4}"


def run_pl(
    cwd: Path, *args: str, env: Optional[Dict[str, str]] = None
) -> subprocess.CompletedProcess:
    """Runs run.pl in ``cwd`` and returns the finished process."""
    return subprocess.run(
        [str(RUN_PL), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def body(log: Path) -> List[str]:
    """Returns the lines of a log between the header and the footer."""
    return log.read_text().splitlines()[3:-2]


def test_job_array_log_format(tmp_path: Path) -> None:
    result = run_pl(tmp_path, "JOB=1:3", "exp/log/a.JOB.log", "echo", "job", "JOB")
    assert result.returncode == 0, result.stderr
    for job in (1, 2, 3):
        lines = (tmp_path / f"exp/log/a.{job}.log").read_text().splitlines()
        assert lines[0] == f"# echo job {job}"
        assert re.fullmatch(rf"# Started at {DATE}", lines[1])
        assert lines[2] == "#"
        assert lines[3] == f"job {job}"
        assert re.fullmatch(r"# Accounting: time=\d+ threads=1", lines[4])
        assert re.fullmatch(rf"# Ended \(code 0\) at {DATE}", lines[5])
        assert len(lines) == 6


def test_single_job_threads_stderr_and_pipe(tmp_path: Path) -> None:
    result = run_pl(
        tmp_path, "--num-threads", "4", "log/one.log",
        "bash", "-c", "echo out; echo err >&2", "|", "tr", "a-z", "A-Z",
    )
    assert result.returncode == 0, result.stderr
    log = tmp_path / "log/one.log"
    assert sorted(body(log)) == ["OUT", "err"]  # stderr bypasses the pipe
    assert re.search(r"^# Accounting: time=\d+ threads=4$", log.read_text(), re.M)


def test_num_threads_underscore_spelling(tmp_path: Path) -> None:
    result = run_pl(tmp_path, "--num_threads", "3", "--gpu", "0", "x.log", "true")
    assert result.returncode == 0, result.stderr
    assert "threads=3" in (tmp_path / "x.log").read_text()


def test_failures_exit_code_and_message(tmp_path: Path) -> None:
    result = run_pl(
        tmp_path, "JOB=1:4", "log/b.JOB.log", "bash", "-c", "echo JOB; exit $((JOB % 2))"
    )
    assert result.returncode == 1
    assert "run.pl: 2 / 4 failed, log is in log/b.*.log" in result.stderr
    assert re.search(r"^# Ended \(code 1\) at ", (tmp_path / "log/b.1.log").read_text(), re.M)
    assert re.search(r"^# Ended \(code 0\) at ", (tmp_path / "log/b.2.log").read_text(), re.M)
    assert body(tmp_path / "log/b.3.log") == ["3"]


def test_single_job_failure_message(tmp_path: Path) -> None:
    result = run_pl(tmp_path, "log/c.log", "bash", "-c", "exit 3")
    assert result.returncode == 1
    assert "run.pl: job failed, log is in log/c.log" in result.stderr
    assert "# Ended (code 3) at " in (tmp_path / "log/c.log").read_text()


def test_arguments_with_spaces_and_quotes_survive(tmp_path: Path) -> None:
    words = ["a b", "it's", 'say "hi" now', "both ' and \"", "$HOME x", "back\\slash", ""]
    script = "import json, sys; print(json.dumps(sys.argv[1:]))"
    result = run_pl(tmp_path, "q.log", sys.executable, "-c", script, *words)
    assert result.returncode == 0, result.stderr
    assert json.loads(body(tmp_path / "q.log")[0]) == words
    header = (tmp_path / "q.log").read_text().splitlines()[0]
    assert header.startswith(f'# {sys.executable} -c "import json, sys;')
    assert '"a b"' in header  # Kaldi's double quotes where they are safe


def _max_overlap(intervals: List[List[float]]) -> int:
    """Largest number of intervals that are open at the same time."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = running = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def test_max_jobs_run_caps_parallelism(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    stamp = "python3 -c 'import time; print(time.time())'"
    job = f"{stamp} > t/JOB.start; sleep 0.4; {stamp} > t/JOB.end"
    result = run_pl(tmp_path, "--max-jobs-run", "2", "JOB=1:5", "log/m.JOB.log", "bash", "-c", job)
    assert result.returncode == 0, result.stderr
    intervals = [
        [float((tmp_path / f"t/{j}.{k}").read_text()) for k in ("start", "end")]
        for j in range(1, 6)
    ]
    assert _max_overlap(intervals) == 2


def test_gpu_jobs_get_their_own_device(tmp_path: Path) -> None:
    result = run_pl(
        tmp_path, "--gpu", "1", "JOB=1:2", "log/g.JOB.log",
        "bash", "-c", "sleep 0.3; echo $CUDA_VISIBLE_DEVICES",
        env={"CUDA_VISIBLE_DEVICES": "3,5"},
    )
    assert result.returncode == 0, result.stderr
    assert body(tmp_path / "log/g.1.log") == ["3"]
    assert body(tmp_path / "log/g.2.log") == ["5"]


def test_config_is_ignored_with_a_warning(tmp_path: Path) -> None:
    result = run_pl(
        tmp_path, "--config", "conf/queue.conf", "--mem", "4G", "--name", "x", "c.log", "true"
    )
    assert result.returncode == 0
    assert "WARNING" in result.stderr and "--config conf/queue.conf" in result.stderr


def test_parallel_job_with_one_log_is_refused(tmp_path: Path) -> None:
    result = run_pl(tmp_path, "JOB=1:2", "log/one.log", "true")
    assert result.returncode == 1
    assert "just one log file" in result.stderr
    assert not (tmp_path / "log").exists()


def test_job_range_not_starting_at_one(tmp_path: Path) -> None:
    result = run_pl(tmp_path, "JOB=3:4", "l/x.JOB.log", "echo", "JOB")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "l").iterdir()) == ["x.3.log", "x.4.log"]
    assert run_pl(tmp_path, "JOB=0:2", "l/y.JOB.log", "true").returncode == 1


def live_group_members(pgid: int) -> List[int]:
    """Lists the processes of a process group that are alive (not zombies)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def test_sigterm_stops_every_job_and_its_children(tmp_path: Path) -> None:
    (tmp_path / "pids").mkdir()
    process = subprocess.Popen(
        [str(RUN_PL), "JOB=1:2", "log/s.JOB.log",
         "bash", "-c", "echo $$ > pids/JOB; sleep 60 | cat"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    pid_files = [tmp_path / "pids/1", tmp_path / "pids/2"]
    deadline = time.time() + 30
    while not all(p.exists() and p.read_text().strip() for p in pid_files):
        assert time.time() < deadline, "jobs did not start"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "run.pl: 2 / 2 failed" in stderr
    for job, pid_file in enumerate(pid_files, 1):
        assert "# Ended (code 0; signal 15) at " in (tmp_path / f"log/s.{job}.log").read_text()
        assert live_group_members(int(pid_file.read_text())) == []
