#!/usr/bin/env python3
"""Run a command, or an array of commands, on the local machine (Kaldi ``run.pl``).

Usage:
    run.pl [options] [JOB=<start>:<end>] <logfile> <command> [<arg> ...]
    run.pl [options] [JOB=<n>] <logfile> <command> [<arg> ...]

Examples:
    run.pl exp/log/prep.log local/data_prep.sh data/train
    run.pl --max-jobs-run 4 JOB=1:8 exp/log/stats.JOB.log \\
        python3 -m espnet2.bin.asr_train --collect_stats true --split JOB
    run.pl JOB=1:2 exp/log/x.JOB.log my-prog "--opt=foo bar" \\| sort

This is a Python re-implementation of Kaldi's ``utils/run.pl`` with the same
command line, so that ESPnet tools that choose their launcher from the basename
of the ``--cmd`` script (``espnet2.bin.launch``, ``asr.sh``) can use it.

The command words are re-joined into one bash command line the way Kaldi does
it (a word without whitespace, quotes or backslashes stays as it is, so
``\\|`` forms a pipe; any other word is quoted so that it arrives unchanged),
then run with ``bash -c``. With ``JOB=1:N`` the string ``JOB`` is replaced by
the job number in both the log file name and the command, and the jobs run in
parallel. Each log file (its directory is created) looks like::

    # <command>
    # Started at <date>
    #
    <stdout and stderr of the command>
    # Accounting: time=<seconds> threads=<num_threads>
    # Ended (code <exit status>) at <date>

Options (each takes a value; ``-`` and ``_`` are interchangeable in names):
    --max-jobs-run N   Run at most N jobs at once. Default: the number of usable
                       CPUs, or with ``--gpu G`` (G > 0) the number of GPUs // G.
    --num-threads N    Only reported in the log footer (``threads=N``).
    --gpu G            Each job uses G GPUs: it gets CUDA_VISIBLE_DEVICES set to
                       G of the visible GPUs (the current CUDA_VISIBLE_DEVICES,
                       else ``nvidia-smi -L``), the least used ones first (jobs
                       share GPUs only when --max-jobs-run allows more jobs
                       than there are GPUs). With fewer than G visible GPUs,
                       CUDA_VISIBLE_DEVICES is left alone.
    --num-nodes N      Only 1 is possible locally; larger values are an error.
    --config FILE      Ignored with a warning (it configures queue back-ends).
    --mem, --time, --partition, --name
                       Queue-only options, ignored.
    Other ``--<option> <value>`` pairs are ignored with a warning.

Exit status: 0 when every job succeeded; otherwise 1, after printing
``run.pl: K / N failed, log is in <log with * for JOB>`` (or ``run.pl: job
failed, log is in <log>`` for a single job) to stderr.
"""

import dataclasses
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from typing import Dict, IO, List, Optional, Sequence, Set

QUEUE_ONLY_OPTIONS = frozenset({"mem", "time", "partition", "name"})
RUN_PL_OPTIONS = frozenset({"max_jobs_run", "num_threads", "gpu", "num_nodes", "config"})
JOB_RANGE = re.compile(r"^([A-Za-z_]\w*)=(\d+):(\d+)$")
JOB_SINGLE = re.compile(r"^([A-Za-z_]\w*)=(\d+)$")


class UsageError(Exception):
    """A malformed command line."""


@dataclasses.dataclass
class CommandLine:
    """A parsed ``run.pl``-style command line.

    Attributes:
        options: ``--name value`` options, names with ``-`` replaced by ``_``.
        flags: Value-less options that were given (e.g. ``dry_run``).
        jobname: The array variable (e.g. ``JOB``), or None for a single job.
        jobstart: First job number (1 when there is no array).
        jobend: Last job number (1 when there is no array).
        logfile: Log file name, still containing ``jobname``.
        words: The command words.
    """

    options: Dict[str, str]
    flags: Set[str]
    jobname: Optional[str]
    jobstart: int
    jobend: int
    logfile: str
    words: List[str]

    @property
    def num_jobs(self) -> int:
        """Number of jobs in the array."""
        return self.jobend - self.jobstart + 1

    def job_ids(self) -> List[int]:
        """Returns the job numbers, in order."""
        return list(range(self.jobstart, self.jobend + 1))

    def substitute(self, text: str, job_id: int) -> str:
        """Replaces every occurrence of the job variable in ``text`` by ``job_id``.

        Args:
            text: A log file name or command line.
            job_id: The job number.

        Returns:
            The text for that job (unchanged when there is no job variable).
        """
        if self.jobname is None:
            return text
        return text.replace(self.jobname, str(job_id))

    def failure_message(self, prog: str, num_failed: int) -> str:
        """Formats Kaldi's message for failed jobs.

        Args:
            prog: Program name (``run.pl``, ``slurm.pl``).
            num_failed: How many jobs failed.

        Returns:
            ``<prog>: K / N failed, log is in <log with * for JOB>``, or
            ``<prog>: job failed, log is in <log>`` when there is one job.
        """
        if self.num_jobs == 1:
            log = self.substitute(self.logfile, self.jobstart)
            return f"{prog}: job failed, log is in {log}"
        log = self.logfile.replace(self.jobname or "", "*")
        return f"{prog}: {num_failed} / {self.num_jobs} failed, log is in {log}"


def parse_command_line(
    prog: str, argv: Sequence[str], flag_names: Sequence[str] = ()
) -> CommandLine:
    """Parses ``[options] [JOB=a:b] <logfile> <command ...>`` like Kaldi's scripts.

    Options and the job range may come in any order before the log file.

    Args:
        prog: Program name for messages (``run.pl``, ``slurm.pl``).
        argv: The arguments after the program name.
        flag_names: Names (with ``_``) of options that take no value.

    Returns:
        The parsed command line.

    Raises:
        UsageError: On a bad option, job range, or a missing log file or command.
    """
    args = list(argv)
    options: Dict[str, str] = {}
    flags: Set[str] = set()
    jobname: Optional[str] = None
    jobstart = jobend = 1
    while args:
        arg = args[0]
        name = arg[2:].replace("-", "_") if arg.startswith("--") else ""
        job_match = JOB_RANGE.match(arg) or JOB_SINGLE.match(arg)
        if name in flag_names:
            flags.add(name)
            args.pop(0)
        elif arg.startswith("-"):
            if not name:
                raise UsageError(f"{prog}: unsupported option '{arg}'")
            if len(args) < 2:
                raise UsageError(f"{prog}: option '{arg}' needs a value")
            if args[1].startswith("--"):
                print(
                    f"{prog}: WARNING: suspicious argument '{args[1]}' to {arg}; "
                    "starts with '-'",
                    file=sys.stderr,
                )
            options[name] = args[1]
            del args[:2]
        elif jobname is None and job_match:
            jobname = job_match.group(1)
            jobstart = int(job_match.group(2))
            jobend = int(job_match.group(3)) if job_match.lastindex == 3 else jobstart
            if jobstart > jobend:
                raise UsageError(f"{prog}: invalid job range {arg}")
            if jobstart <= 0:
                raise UsageError(
                    f"{prog}: invalid job range {arg}, start must be strictly positive"
                )
            args.pop(0)
        else:
            break
    if len(args) < 2:
        raise UsageError(
            f"usage: {prog} [options] [JOB=1:N] <logfile> <command> [<arg> ...]"
        )
    logfile = args[0]
    if jobname is not None and jobend > jobstart and jobname not in logfile:
        raise UsageError(
            f"{prog}: you are trying to run a parallel job but you are putting "
            f"the output into just one log file ({logfile})"
        )
    return CommandLine(options, flags, jobname, jobstart, jobend, logfile, args[1:])


def join_command(words: Sequence[str]) -> str:
    """Joins command words into one bash command line, quoting like Kaldi's run.pl.

    A word without whitespace, quotes or backslashes is kept as it is (so
    ``|``, ``>`` and ``$VAR`` keep their shell meaning). Other words are quoted
    so that they arrive unchanged: in double quotes like Kaldi when that is safe
    (no ``"``, ``$``, backquote or backslash inside), else in single quotes.

    Args:
        words: The command words.

    Returns:
        The command line.
    """
    quoted = []
    for word in words:
        if re.fullmatch(r"[^\s'\"\\]+", word):
            quoted.append(word)
        elif re.search(r'["$`\\]', word):
            quoted.append(shlex.quote(word))
        else:
            quoted.append(f'"{word}"')
    return " ".join(quoted)


def date_string() -> str:
    """Returns the current local time formatted like ``date`` in the C locale."""
    return time.strftime("%a %b %e %H:%M:%S %Z %Y")


def end_status(returncode: int) -> str:
    """Formats an exit status for the log footer like Kaldi.

    Args:
        returncode: ``Popen.returncode`` (negative when killed by a signal).

    Returns:
        ``code N`` or ``code 0; signal S``.
    """
    if returncode < 0:
        return f"code 0; signal {-returncode}"
    return f"code {returncode}"


def write_log_header(logfile: str, command: str) -> None:
    """Creates the log file (and its directory) with the Kaldi header.

    Args:
        logfile: The log file name.
        command: The command line that will run.
    """
    directory = os.path.dirname(logfile)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(logfile, "w", encoding="utf-8") as f:
        f.write(f"# {command}\n# Started at {date_string()}\n#\n")


def write_log_footer(logfile: str, seconds: int, threads: str, returncode: int) -> None:
    """Appends the Kaldi footer to a log file.

    Args:
        logfile: The log file name.
        seconds: Wall-clock run time.
        threads: The ``--num-threads`` value.
        returncode: The job's ``Popen.returncode``.
    """
    with open(logfile, "a", encoding="utf-8") as f:
        f.write(f"# Accounting: time={seconds} threads={threads}\n")
        f.write(f"# Ended ({end_status(returncode)}) at {date_string()}\n")


def visible_gpus() -> List[str]:
    """Lists the GPU ids jobs may use.

    Returns:
        The entries of CUDA_VISIBLE_DEVICES when it is set, else ``0..n-1`` for
        the n GPUs that ``nvidia-smi -L`` lists (none when it is missing).
    """
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [x.strip() for x in env.split(",") if x.strip()]
    try:
        out = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return []
    return [str(i) for i in range(sum(1 for line in out.splitlines() if line.strip()))]


@dataclasses.dataclass
class RunningJob:
    """A started job.

    Attributes:
        job_id: The job number.
        logfile: Its log file.
        process: The ``bash -c`` process.
        log: The open log file the process writes to.
        started: ``time.time()`` at start.
        gpus: The GPU ids given to it.
    """

    job_id: int
    logfile: str
    process: subprocess.Popen
    log: IO[str]
    started: float
    gpus: List[str]


class LocalRunner:
    """Runs the jobs of a command line with bounded parallelism.

    Args:
        cmdline: The parsed command line.
        max_jobs: Most jobs running at once.
        gpus_per_job: GPUs each job gets (0: CUDA_VISIBLE_DEVICES left alone).
        gpus: GPU ids to hand out (empty: CUDA_VISIBLE_DEVICES left alone).
        threads: Value for the ``threads=`` field of the footer.
    """

    def __init__(
        self,
        cmdline: CommandLine,
        max_jobs: int,
        gpus_per_job: int,
        gpus: List[str],
        threads: str,
    ) -> None:
        self.cmdline = cmdline
        self.max_jobs = max_jobs
        self.gpus_per_job = gpus_per_job if len(gpus) >= gpus_per_job else 0
        self.gpu_load = {gpu: 0 for gpu in gpus}
        self.threads = threads
        self.running: Dict[int, RunningJob] = {}
        self.failed: List[int] = []
        self.stopping = False

    def _take_gpus(self) -> List[str]:
        """Picks the least loaded GPUs for a new job and counts them as used."""
        if self.gpus_per_job == 0:
            return []
        order = sorted(self.gpu_load, key=lambda g: self.gpu_load[g])
        chosen = order[: self.gpus_per_job]
        for gpu in chosen:
            self.gpu_load[gpu] += 1
        return chosen

    def _start(self, job_id: int) -> None:
        """Writes the log header and starts one job."""
        command = self.cmdline.substitute(join_command(self.cmdline.words), job_id)
        logfile = self.cmdline.substitute(self.cmdline.logfile, job_id)
        write_log_header(logfile, command)
        gpus = self._take_gpus()
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        log = open(logfile, "a", encoding="utf-8")
        process = subprocess.Popen(
            ["bash", "-c", command],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.running[process.pid] = RunningJob(
            job_id, logfile, process, log, time.time(), gpus
        )

    def _reap_one(self) -> None:
        """Waits for any running job to end and writes its log footer."""
        pid, status = os.waitpid(-1, 0)
        while pid not in self.running:
            pid, status = os.waitpid(-1, 0)
        job = self.running.pop(pid)
        job.process.returncode = os.waitstatus_to_exitcode(status)
        job.log.close()
        for gpu in job.gpus:
            self.gpu_load[gpu] -= 1
        write_log_footer(
            job.logfile,
            int(time.time()) - int(job.started),
            self.threads,
            job.process.returncode,
        )
        if job.process.returncode != 0:
            self.failed.append(job.job_id)

    def _forward_signal(self, signum: int, _frame: object) -> None:
        """Stops starting new jobs and passes the signal on to the running ones.

        Each job runs in its own process group, which gets the signal whole.
        """
        self.stopping = True
        for pid in self.running:
            try:
                os.killpg(pid, signum)
            except ProcessLookupError:
                continue

    def run(self) -> int:
        """Runs every job.

        Returns:
            The number of jobs that failed or were never started because
            run.pl was interrupted.
        """
        signal.signal(signal.SIGTERM, self._forward_signal)
        signal.signal(signal.SIGINT, self._forward_signal)
        started = 0
        for job_id in self.cmdline.job_ids():
            while len(self.running) >= self.max_jobs and not self.stopping:
                self._reap_one()
            if self.stopping:
                break
            self._start(job_id)
            started += 1
        while self.running:
            self._reap_one()
        return len(self.failed) + self.cmdline.num_jobs - started


def max_jobs_run(options: Dict[str, str], gpus_per_job: int, gpus: List[str]) -> int:
    """Chooses how many jobs may run at once.

    Args:
        options: The parsed options.
        gpus_per_job: The ``--gpu`` value.
        gpus: The visible GPU ids.

    Returns:
        ``--max-jobs-run`` if given, else GPUs // gpus_per_job (at least 1) for
        GPU jobs, else the number of usable CPUs.

    Raises:
        UsageError: If ``--max-jobs-run`` is not a positive integer.
    """
    if "max_jobs_run" in options:
        value = options["max_jobs_run"]
        if not value.isdigit() or int(value) == 0:
            raise UsageError(f"run.pl: invalid --max-jobs-run {value}")
        return int(value)
    if gpus_per_job > 0:
        if not gpus:
            print(
                "run.pl: WARNING: failed to detect any GPU, running one job at a time",
                file=sys.stderr,
            )
        return max(1, len(gpus) // gpus_per_job)
    return len(os.sched_getaffinity(0))


def main(argv: Sequence[str]) -> int:
    """Runs ``run.pl`` with the given arguments.

    Args:
        argv: The arguments after the program name.

    Returns:
        The exit status.
    """
    try:
        cmdline = parse_command_line("run.pl", argv)
        options = cmdline.options
        for name in options:
            if name == "config":
                print(
                    f"run.pl: WARNING: ignoring --config {options[name]} "
                    "(only queue back-ends use it)",
                    file=sys.stderr,
                )
            elif name not in QUEUE_ONLY_OPTIONS | RUN_PL_OPTIONS:
                print(f"run.pl: WARNING: ignoring option --{name}", file=sys.stderr)
        if options.get("num_nodes", "1") != "1":
            raise UsageError("run.pl: --num-nodes > 1 needs a queue (slurm.pl)")
        gpu_value = options.get("gpu", "0")
        if not gpu_value.isdigit():
            raise UsageError(f"run.pl: invalid --gpu {gpu_value}")
        gpus_per_job = int(gpu_value)
        gpus = visible_gpus() if gpus_per_job > 0 else []
        runner = LocalRunner(
            cmdline,
            max_jobs_run(options, gpus_per_job, gpus),
            gpus_per_job,
            gpus,
            options.get("num_threads", "1"),
        )
    except UsageError as e:
        print(e, file=sys.stderr)
        return 1
    num_failed = runner.run()
    if num_failed == 0:
        return 0
    print(cmdline.failure_message("run.pl", num_failed), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
