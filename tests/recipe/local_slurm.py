"""A single-node Slurm cluster on this machine, for the Slurm backend's tests.

Debian's ``slurm-wlm`` and ``munge`` (``tools/setup.sh`` installs them): ``munged``,
``slurmctld`` and ``slurmd`` run as the current user with their own key, sockets, free
ports, state and logs under one directory; clients find the cluster through
``SLURM_CONF``. Nothing system-wide is touched.
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, Optional

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scancel")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """Start / stop a one-node cluster under ``root``.

    Args:
        root: directory for config, state, sockets and logs.
        cpus: CPUs the node offers (default: all of this machine's).
    """

    def __init__(self, root: Path, cpus: Optional[int] = None):
        self.root = root
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = root / "slurm.conf"
        self.socket = root / "munge.sock"

    def env(self) -> Dict[str, str]:
        """What a client (sbatch, squeue, slurm.pl) needs to reach the cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def start(self, wait: float = 30.0) -> Optional[str]:
        """Start the daemons; None when the node is idle, else why it could not start."""
        missing = [b for b in BINARIES if shutil.which(b) is None]
        if missing:
            return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
        if os.geteuid() != 0:
            return "slurmd must run as root to start jobs"
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        result = self._run("munged", "--force", "-S", str(self.socket), f"--key-file={key}",
                           f"--log-file={self.root / 'log/munged.log'}",
                           f"--pid-file={self.root / 'munged.pid'}",
                           f"--seed-file={self.root / 'munged.seed'}")
        if result.returncode != 0:
            return f"munged failed: {result.stderr.strip()}"
        host = socket.gethostname().split(".")[0]
        r = self.root
        self.conf.write_text(f"""ClusterName=supernettest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=2000
MpiDefault=none
ReturnToService=2
NodeName={host} CPUs={self.cpus} RealMemory={2000 * self.cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        for daemon in ("slurmctld", "slurmd"):
            result = self._run(daemon, "-f", str(self.conf))
            if result.returncode != 0:
                self.stop()
                return f"{daemon} failed: {result.stderr.strip()}"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            state = self._run("sinfo", "-h", "-o", "%t").stdout.strip()
            if state == "idle":
                return None
            time.sleep(0.5)
        logs = "".join((self.root / "log" / f).read_text()[-1500:]
                       for f in ("slurmctld.log", "slurmd.log")
                       if (self.root / "log" / f).exists())
        self.stop()
        return f"the node did not become idle within {wait:.0f} s (state {state!r}): {logs}"

    def queue(self) -> str:
        """``squeue`` output (no header)."""
        return self._run("squeue", "-h").stdout

    def stop(self) -> None:
        """Cancel every job and stop the daemons."""
        if self.conf.exists():
            self._run("scancel", "--user", str(os.geteuid()))
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.root / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), 15)
                except (ValueError, ProcessLookupError):
                    pass

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, **self.env()})
