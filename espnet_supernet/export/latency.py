"""CPU latency of deployable models, measured on this machine and cached per machine.

FLOPs predict CPU latency badly (memory-bound depthwise convolutions, small matmuls, a
fixed front end), so deployment decisions use measured latency: the median of repeated
runs of encoder + CTC greedy decoding (features included) on a fixed 10 s input.
"""

import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, Optional

import torch


def machine_id(threads: int) -> str:
    """This machine's identity for the latency table: host, CPU model, thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    digest = hashlib.sha1(f"{platform.node()}|{cpu}".encode()).hexdigest()[:10]
    return f"{platform.node()}-{digest}-t{threads}"


@torch.inference_mode()
def measure_latency_ms(model: torch.nn.Module, seconds: float = 10.0, threads: int = 2,
                       repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time (ms) of ``model.encode`` + CTC argmax on one ``seconds`` input.

    Args:
        model: an ESPnet ASR model (eval mode is set); its ``encode`` takes the waveform.
        seconds: input length (16 kHz waveform, fixed seed).
        threads: ``torch.set_num_threads`` while measuring (restored afterwards).
        repeats, warmup: timed and untimed runs.
    """
    model.eval()
    speech = torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([speech.size(1)])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = []
        for i in range(warmup + repeats):
            start = time.perf_counter()
            enc, _ = model.encode(speech, lengths)
            enc = enc[0] if isinstance(enc, tuple) else enc  # intermediate CTC dropped
            model.ctc.argmax(enc)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return statistics.median(times) * 1e3


class LatencyTable:
    """Measured latencies of this machine, kept in a JSON file per machine and thread
    count (``<directory>/latency_<machine id>.json``), keyed by model.

    A key should change when the model changes (e.g. include the checkpoint's mtime).
    """

    def __init__(self, directory: Path, threads: int = 2, seconds: float = 10.0):
        self.threads, self.seconds = threads, seconds
        self.path = Path(directory) / f"latency_{machine_id(threads)}.json"
        self.entries: Dict[str, float] = (json.loads(self.path.read_text())
                                          if self.path.exists() else {})

    def get(self, key: str, model_factory, repeats: int = 10) -> float:
        """Cached latency (ms) of ``key``, measured with ``model_factory()`` if absent."""
        full_key = f"{key}|{self.seconds}s"
        if full_key not in self.entries:
            self.entries[full_key] = round(
                measure_latency_ms(model_factory(), self.seconds, self.threads, repeats), 3)
            self._save()
        return self.entries[full_key]

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.entries, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.path)


def file_key(path: Optional[Path], label: str) -> str:
    """A latency-table key for ``label`` of the model file ``path`` (name + mtime)."""
    if path is None:
        return label
    stat = Path(path).stat()
    return f"{Path(path).resolve()}@{int(stat.st_mtime)}|{label}"
