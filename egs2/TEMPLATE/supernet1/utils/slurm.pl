#!/usr/bin/env python3
"""Run a command, or an array of commands, as Slurm batch jobs (Kaldi ``slurm.pl``).

Usage:
    slurm.pl [options] [JOB=<start>:<end>] <logfile> <command> [<arg> ...]

Examples:
    slurm.pl --config conf/slurm.conf --gpu 1 --mem 16G exp/log/train.log \\
        python3 -m espnet_supernet.bin.asr_train --ngpu 1 ...
    slurm.pl --max-jobs-run 8 JOB=1:32 exp/log/decode.JOB.log python3 ... JOB
    slurm.pl --dry-run --gpu 2 JOB=1:4 exp/log/x.JOB.log my-prog JOB

The command line, the ``JOB`` substitution, the quoting of the command words
and the log file format are those of ``run.pl`` (this directory). Instead of
running the jobs here, slurm.pl writes a batch script ``<logdir>/q/<name>.sh``
and submits it with one ``sbatch`` call: an array job (``--array=a-b[%M]``)
for ``JOB=a:b``, a plain job otherwise. On the compute node the script runs the
job's command with ``bash -c``, writes the log header and footer, and leaves
the exit status in ``<logdir>/q/done.<pid>.<job>`` (so the log directory must
be on a file system the nodes share). slurm.pl polls for those files and
``squeue`` until the job has left the queue, then exits 0 if every job
succeeded, else 1 after printing ``slurm.pl: K / N failed, log is in <log>``.
Slurm's own output goes to ``<logdir>/q/<name>.<jobid>_<task>.out``
(``<name>.<jobid>.out`` for a plain job). Needs Python >= 3.9 on the
submitting host only; the batch script is plain bash.

slurm.pl never runs ``srun`` itself. It strips the ``SLURM_*`` variables
(except SLURM_CONF) from the environment sbatch sees, so that a call from
inside another job's allocation starts an independent job instead of
inheriting that allocation's settings. A command that itself calls ``srun``
(``espnet2.bin.launch`` does for ``--num_nodes > 1``) runs it inside the
allocation that slurm.pl's sbatch created. On SIGINT/SIGTERM the submitted
job is cancelled with ``scancel``.

Options:
    --config FILE      Option mapping, see below. Default: ``conf/slurm.conf``
                       relative to the current directory if it exists, else the
                       built-in mapping (identical to the shipped conf/slurm.conf).
    --max-jobs-run M   At most M array tasks run at once (``--array=a-b%M``).
    --dry-run          Write the batch script and print the sbatch command line
                       (shell-quoted) instead of submitting.
    Every other ``--name value`` option (``-`` and ``_`` are interchangeable)
    must be described in the config, e.g. ``--gpu N``, ``--num-threads N``,
    ``--mem X``, ``--time T``, ``--partition P``, ``--num-nodes N``,
    ``--name NAME``. The job name defaults to the log file's base name.

Config format (that of Kaldi's queue.pl/slurm.pl configs; ``#`` starts a
comment, blank lines are ignored, words are split like a shell would):
    command <program and fixed options>
        The submit command, e.g. ``command sbatch --export=ALL``.
    option <name>=* <sbatch options>
        Used for any value of ``--<name>``; ``$0`` in the options is replaced
        by the value, e.g. ``option gpu=* --gres=gpu:$0``.
    option <name>=<value> [<sbatch options>]
        Used for that exact value; wins over ``<name>=*``; may map to nothing,
        e.g. ``option gpu=0``.
    default <name>=<value>
        The value used when ``--<name>`` is not given.
The options are added in the order of the config's ``option`` lines.
"""

import dataclasses
import importlib.machinery
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import types
from typing import Dict, List, Optional, Sequence, Tuple


def _load_run_pl() -> types.ModuleType:
    """Imports the sibling ``run.pl`` (a Python script) as a module."""
    path = os.path.join(os.path.dirname(os.path.realpath(__file__)), "run.pl")
    loader = importlib.machinery.SourceFileLoader("kaldi_run_pl", path)
    module = types.ModuleType(loader.name)
    module.__file__ = path
    loader.exec_module(module)
    return module


run_pl = _load_run_pl()
UsageError = run_pl.UsageError
CommandLine = run_pl.CommandLine

DEFAULT_CONFIG = """\
command sbatch --export=ALL --ntasks-per-node=1
option name=* --job-name $0
option time=* --time $0
option partition=* --partition $0
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_nodes=* --nodes $0
option gpu=* --gres=gpu:$0
option gpu=0
default num_threads=1
default gpu=0
"""

# Options slurm.pl handles itself; they need no config line.
BUILTIN_OPTIONS = frozenset({"config", "max_jobs_run"})
FLAGS = ("dry_run",)
POLL_MAX_SECONDS = 10.0
DONE_FILE_GRACE_SECONDS = 30.0


@dataclasses.dataclass
class SlurmConfig:
    """A parsed slurm.pl config.

    Attributes:
        command: The submit command words (e.g. ``["sbatch", "--export=ALL"]``).
        any_value: ``name -> options`` for ``option name=*`` lines.
        exact_value: ``(name, value) -> options`` for ``option name=value`` lines.
        defaults: ``name -> value`` for ``default`` lines.
        order: Option names in the order of their first ``option`` line.
        source: Where the config came from, for messages.
    """

    command: List[str]
    any_value: Dict[str, List[str]]
    exact_value: Dict[Tuple[str, str], List[str]]
    defaults: Dict[str, str]
    order: List[str]
    source: str

    def knows(self, name: str) -> bool:
        """Tells whether the config has an ``option`` line for ``name``."""
        return name in self.order


def parse_config(text: str, source: str) -> SlurmConfig:
    """Parses the config format described in the module docstring.

    Args:
        text: The config text.
        source: Its file name (or a description), for messages.

    Returns:
        The parsed config.

    Raises:
        UsageError: On a malformed line or a missing ``command`` line.
    """
    config = SlurmConfig([], {}, {}, {}, [], source)
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"slurm.pl: {source}:{lineno}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise UsageError(f"{where}: {e}") from e
        if not words:
            continue
        kind = words[0]
        if kind == "command" and len(words) > 1:
            config.command = words[1:]
            continue
        match = re.fullmatch(r"([\w-]+)=(.+)", words[1]) if len(words) > 1 else None
        if match is None or kind not in ("option", "default"):
            raise UsageError(f"{where}: cannot parse '{line}'")
        name, value = match.group(1).replace("-", "_"), match.group(2)
        if kind == "default":
            if len(words) != 2:
                raise UsageError(f"{where}: a default line is 'default <name>=<value>'")
            config.defaults[name] = value
            continue
        if name not in config.order:
            config.order.append(name)
        if value == "*":
            config.any_value[name] = words[2:]
        else:
            config.exact_value[(name, value)] = words[2:]
    if not config.command:
        raise UsageError(f"slurm.pl: {source} has no 'command' line")
    return config


def load_config(path: Optional[str]) -> SlurmConfig:
    """Reads the config named by ``--config``, else ``conf/slurm.conf``, else the default.

    Args:
        path: The ``--config`` value, or None.

    Returns:
        The parsed config.

    Raises:
        UsageError: If the file cannot be read or parsed.
    """
    if path is None:
        if not os.path.isfile("conf/slurm.conf"):
            return parse_config(DEFAULT_CONFIG, "built-in config")
        path = "conf/slurm.conf"
    try:
        with open(path, encoding="utf-8") as f:
            return parse_config(f.read(), path)
    except OSError as e:
        raise UsageError(f"slurm.pl: cannot read config: {e}") from e


def option_words(config: SlurmConfig, values: Dict[str, str]) -> List[str]:
    """Translates option values into submit-command options.

    Args:
        config: The config.
        values: ``name -> value`` from the command line.

    Returns:
        The submit options, for the given values and the config's defaults, in
        the config's order.

    Raises:
        UsageError: If a value is not described by the config.
    """
    for name in values:
        if not config.knows(name):
            raise UsageError(
                f"slurm.pl: option --{name} is not described in {config.source}"
            )
    words: List[str] = []
    for name in config.order:
        value = values.get(name, config.defaults.get(name))
        if value is None:
            continue
        if (name, value) in config.exact_value:
            words += config.exact_value[(name, value)]
        elif name in config.any_value:
            words += [w.replace("$0", value) for w in config.any_value[name]]
        else:
            raise UsageError(
                f"slurm.pl: value '{value}' of --{name} is not allowed by "
                f"{config.source}"
            )
    return words


@dataclasses.dataclass
class Submission:
    """Everything needed to submit and follow one slurm.pl call.

    Attributes:
        sbatch: The submit command line.
        script_path: The batch script file.
        script: The batch script text.
        done_files: ``job number -> file`` holding that job's exit status.
        logs: ``job number -> log file``.
    """

    sbatch: List[str]
    script_path: str
    script: str
    done_files: Dict[int, str]
    logs: Dict[int, str]


def queue_paths(cmdline: CommandLine) -> Tuple[str, str]:
    """Chooses the directory for the batch script and the job's base name.

    Args:
        cmdline: The parsed command line.

    Returns:
        ``(qdir, name)``: ``<deepest log directory without JOB>/q`` and the log
        file's base name without the job variable and ``.log``.
    """
    logdir = os.path.dirname(cmdline.logfile)
    name = os.path.basename(cmdline.logfile)
    if cmdline.jobname is not None:
        while cmdline.jobname in logdir:
            logdir = os.path.dirname(logdir)
        name = re.sub(rf"[._-]?{re.escape(cmdline.jobname)}", "", name)
    name = re.sub(r"\.log$", "", name) or "job"
    return os.path.join(logdir, "q"), name


def batch_script(
    cmdline: CommandLine,
    logs: Dict[int, str],
    done_files: Dict[int, str],
    threads: str,
) -> str:
    """Writes the text of the batch script that runs one job of the array.

    Args:
        cmdline: The parsed command line.
        logs: ``job number -> log file``.
        done_files: ``job number -> exit status file``.
        threads: The ``threads=`` value of the log footer.

    Returns:
        A bash script; the job number is ``$SLURM_ARRAY_TASK_ID`` (or the only
        job's number for a plain job).
    """
    command = run_pl.join_command(cmdline.words)
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        "# Written by slurm.pl; the command runs with bash -c.",
        f"cd {q(os.getcwd())}",
        f"task=${{SLURM_ARRAY_TASK_ID:-{cmdline.jobstart}}}",
        'case "$task" in',
    ]
    for job_id in cmdline.job_ids():
        lines.append(
            f"  {job_id}) log={q(logs[job_id])}; done_file={q(done_files[job_id])};"
            f" cmd={q(cmdline.substitute(command, job_id))} ;;"
        )
    lines += [
        '  *) echo "slurm.pl: no job number $task" >&2; exit 1 ;;',
        "esac",
        'echo "# Running on $(hostname) as job ${SLURM_JOB_ID:-?} task $task"',
        'mkdir -p "$(dirname "$log")"',
        "stamp() { LC_ALL=C date '+%a %b %e %H:%M:%S %Z %Y'; }",
        '{ printf \'# %s\\n\' "$cmd"; echo "# Started at $(stamp)"; echo "#"; } >"$log"',
        "start=$(date +%s)",
        'bash -c "$cmd" </dev/null >>"$log" 2>&1',
        "ret=$?",
        "end=$(date +%s)",
        f'echo "# Accounting: time=$((end - start)) threads={threads}" >>"$log"',
        'echo "# Ended (code $ret) at $(stamp)" >>"$log"',
        'echo "$ret" >"$done_file.tmp" && mv "$done_file.tmp" "$done_file"',
        "exit $ret",
    ]
    return "\n".join(lines) + "\n"


def build_submission(
    cmdline: CommandLine, config: SlurmConfig, pid: int
) -> Submission:
    """Builds the sbatch command line and batch script for a command line.

    Args:
        cmdline: The parsed command line.
        config: The option mapping.
        pid: Makes the exit status files of this call unique.

    Returns:
        The submission.

    Raises:
        UsageError: On options the config does not describe.
    """
    values = {
        k: v for k, v in cmdline.options.items() if k not in BUILTIN_OPTIONS
    }
    qdir, name = queue_paths(cmdline)
    if "name" not in values and config.knows("name"):
        values["name"] = name
    script_path = os.path.join(qdir, f"{name}.sh")
    sbatch = config.command + option_words(config, values) + ["--parsable"]
    if cmdline.jobname is not None:
        array = f"--array={cmdline.jobstart}-{cmdline.jobend}"
        if "max_jobs_run" in cmdline.options:
            array += f"%{cmdline.options['max_jobs_run']}"
        sbatch += [array, f"--output={qdir}/{name}.%A_%a.out"]
    else:
        sbatch.append(f"--output={qdir}/{name}.%j.out")
    sbatch.append(script_path)
    logs = {j: cmdline.substitute(cmdline.logfile, j) for j in cmdline.job_ids()}
    done_files = {
        j: os.path.join(qdir, f"done.{pid}.{j}") for j in cmdline.job_ids()
    }
    threads = values.get("num_threads", config.defaults.get("num_threads", "1"))
    script = batch_script(cmdline, logs, done_files, threads)
    return Submission(sbatch, script_path, script, done_files, logs)


def sbatch_environment() -> Dict[str, str]:
    """Returns the environment for sbatch: ours without SLURM_* except SLURM_CONF."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_") or k == "SLURM_CONF"
    }


def job_left_queue(job_id: str) -> bool:
    """Asks ``squeue`` whether a job (with all its array tasks) has ended.

    Args:
        job_id: The Slurm job id.

    Returns:
        True when squeue lists no task of the job or no longer knows it; False
        while tasks are listed or when squeue failed (asked again later).
    """
    result = subprocess.run(
        ["squeue", "--noheader", "--jobs", job_id, "--format", "%i"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return "Invalid job id" in result.stderr
    return not result.stdout.strip()


def read_exit_status(path: str) -> Optional[int]:
    """Reads a job's exit status file, or None if it is not there (yet)."""
    try:
        with open(path, encoding="utf-8") as f:
            return int(f.read().strip() or "1")
    except FileNotFoundError:
        return None


def wait_for_jobs(job_id: str, submission: Submission) -> Dict[int, int]:
    """Waits until every job has written its status or the job left the queue.

    Args:
        job_id: The Slurm job id.
        submission: The submission.

    Returns:
        ``job number -> exit status``; a job that left no status file (killed,
        cancelled, out of time, or the directory is not shared) counts as 1.
    """
    status: Dict[int, int] = {}
    delay = 1.0
    gone_since: Optional[float] = None
    while True:
        for job, path in submission.done_files.items():
            if job not in status:
                code = read_exit_status(path)
                if code is not None:
                    status[job] = code
                    os.remove(path)
        if len(status) == len(submission.done_files):
            return status
        if gone_since is None and job_left_queue(job_id):
            gone_since = time.time()
        if gone_since is not None and time.time() - gone_since > DONE_FILE_GRACE_SECONDS:
            for job, path in submission.done_files.items():
                if job not in status:
                    print(
                        f"slurm.pl: job {job_id} task {job} ended without writing "
                        f"{path}; see {submission.logs[job]} and the .out files "
                        f"in {os.path.dirname(path)}",
                        file=sys.stderr,
                    )
                    status[job] = 1
            return status
        time.sleep(delay)
        delay = min(delay * 1.5, POLL_MAX_SECONDS)


def submit(submission: Submission) -> str:
    """Submits the (already written) batch script.

    Args:
        submission: The submission.

    Returns:
        The Slurm job id.

    Raises:
        UsageError: If the submit command cannot run or fails.
    """
    try:
        result = subprocess.run(
            submission.sbatch,
            capture_output=True,
            text=True,
            check=False,
            env=sbatch_environment(),
        )
    except OSError as e:
        raise UsageError(f"slurm.pl: cannot run {submission.sbatch[0]}: {e}") from e
    if result.returncode != 0:
        raise UsageError(
            f"slurm.pl: submission failed ({shlex.join(submission.sbatch)}): "
            f"{result.stderr.strip()}"
        )
    return result.stdout.strip().split(";")[0]


def main(argv: Sequence[str]) -> int:
    """Runs ``slurm.pl`` with the given arguments.

    Args:
        argv: The arguments after the program name.

    Returns:
        The exit status.
    """
    try:
        cmdline = run_pl.parse_command_line("slurm.pl", argv, FLAGS)
        max_jobs = cmdline.options.get("max_jobs_run", "1")
        if not max_jobs.isdigit() or int(max_jobs) == 0:
            raise UsageError(f"slurm.pl: invalid --max-jobs-run {max_jobs}")
        config = load_config(cmdline.options.get("config"))
        submission = build_submission(cmdline, config, os.getpid())
        os.makedirs(os.path.dirname(submission.script_path) or ".", exist_ok=True)
        with open(submission.script_path, "w", encoding="utf-8") as f:
            f.write(submission.script)
        if "dry_run" in cmdline.flags:
            print(shlex.join(submission.sbatch))
            return 0
        for path in submission.done_files.values():
            if os.path.exists(path):
                os.remove(path)
        job_id = submit(submission)
    except UsageError as e:
        print(e, file=sys.stderr)
        return 1

    def cancel(signum: int, _frame: object) -> None:
        """Cancels the submitted job and exits."""
        subprocess.run(["scancel", job_id], check=False)
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, cancel)
    signal.signal(signal.SIGTERM, cancel)
    status = wait_for_jobs(job_id, submission)
    num_failed = sum(1 for code in status.values() if code != 0)
    if num_failed == 0:
        return 0
    print(cmdline.failure_message("slurm.pl", num_failed), file=sys.stderr)
    return 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
