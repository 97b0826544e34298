"""DDP on CPU: two gloo processes train the tiny supernet with the sandwich rule.

Both ranks must sample the same subnets and emit the same stat keys in the same order,
and their averaged loss and the updated weights must equal a single process's on the same
global batch (BatchNorm on running statistics and unpadded utterances, so that each
utterance's computation does not depend on the batch it is in).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

WORKER = Path(__file__).resolve().parent / "ddp_worker.py"


def test_two_gloo_ranks_match_one_process(tmp_path):
    procs = []
    for rank, world in ((0, 2), (1, 2), (0, 1)):
        out = tmp_path / f"rank{rank}_of{world}.json"
        procs.append((out, subprocess.Popen(
            [sys.executable, str(WORKER), str(rank), str(world), str(out),
             str(tmp_path / f"init{world}")], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)))
    for out, proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output[-3000:]
    rank0, rank1, single = (json.loads(out.read_text()) for out, _ in procs)
    for r0, r1, one in zip(rank0["records"], rank1["records"], single["records"]):
        assert r0["plan"] == r1["plan"] == one["plan"]  # same subnets on every rank
        assert r0["keys"] == r1["keys"] == one["keys"]  # same stats, same order
        assert np.isclose((r0["loss"] + r1["loss"]) / 2, one["loss"], rtol=1e-5)
    assert len({tuple(r["plan"]) for r in single["records"]}) > 1  # the middle size varies
    # DDP averaged the gradients: every rank holds the single process's weights
    assert np.allclose(rank0["weight"], single["weight"], atol=1e-6)
    assert np.allclose(rank1["weight"], single["weight"], atol=1e-6)
