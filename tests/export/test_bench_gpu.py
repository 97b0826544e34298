"""bench/bench_gpu.py (the CUDA checks of bench/gpu_check.sh) runs its code on CPU: the
front end and the full encoder equal stock ESPnet's, and a missing GPU is a clear error."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_gpu  # noqa: E402


def test_the_equality_checks_run_and_pass_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    status = bench_gpu.main(["--device", "cpu", "--quick", "--threads", "1", "--checks",
                             "frontend", "stock_equality", "--output", str(out)])
    res = json.loads(out.read_text())
    assert status == 0 and res["all_ok"] and sorted(res["checks"]) == ["frontend",
                                                                      "stock_equality"]
    for check in res["checks"].values():
        assert 0 <= check["max_abs_diff"] <= 1e-4 and check["ms"]["stock"] > 0


def test_a_failing_check_is_recorded_and_sets_the_exit_status(tmp_path, monkeypatch):
    def broken(args, device):
        raise RuntimeError("no kernel")

    monkeypatch.setitem(bench_gpu.CHECKS, "frontend", broken)
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--device", "cpu", "--quick", "--checks", "frontend",
                           "--output", str(out)]) == 1
    check = json.loads(out.read_text())["checks"]["frontend"]
    assert check["ok"] is False and check["error"] == "RuntimeError: no kernel"


def test_no_cuda_says_how_to_dry_run(monkeypatch):
    monkeypatch.setattr(bench_gpu.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device cpu --quick"):
        bench_gpu.main(["--device", "cuda"])
