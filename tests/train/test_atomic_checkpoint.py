"""Atomic checkpoint writes of ``SupernetTrainer`` (a kill or an error during a save
never leaves a truncated ``checkpoint.pth``) and the repair of a killed run's epoch files."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer

from espnet_supernet.train import supernet_trainer
from espnet_supernet.train.supernet_trainer import (
    SupernetTrainer,
    atomic_torch_save,
    atomic_write,
    remove_stale_temp_files,
    restore_epoch_files,
)

BEST = [("valid", "loss", "min")]


def leftovers(directory: Path) -> list:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


class FailingFile:
    """A file object that raises after ``limit`` bytes (a full disk, an I/O error)."""

    def __init__(self, inner, limit: int):
        self.inner, self.limit, self.written = inner, limit, 0

    def write(self, data) -> int:
        if self.written + len(data) > self.limit:
            self.inner.write(bytes(data)[: self.limit - self.written])
            raise OSError(28, "No space left on device")
        self.written += len(data)
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.inner.__exit__(*exc)


def test_atomic_write_replaces_the_file_with_the_mode_open_gives(tmp_path):
    target = tmp_path / "checkpoint.pth"
    target.write_bytes(b"old")
    with atomic_write(target) as out:
        out.write(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new"
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert target.stat().st_mode == plain.stat().st_mode
    assert leftovers(tmp_path) == []


def test_atomic_write_writes_through_a_link(tmp_path):
    (tmp_path / "1epoch.pth").write_bytes(b"old")
    (tmp_path / "latest.pth").symlink_to("1epoch.pth")
    with atomic_write(tmp_path / "latest.pth") as out:
        out.write(b"new")
    assert (tmp_path / "latest.pth").is_symlink()
    assert (tmp_path / "1epoch.pth").read_bytes() == b"new"


@pytest.mark.parametrize("error", [OSError, KeyboardInterrupt])
def test_interrupted_write_keeps_the_previous_file(tmp_path, error):
    target = tmp_path / "checkpoint.pth"
    target.write_bytes(b"previous")
    with pytest.raises(error):
        with atomic_write(target) as out:
            out.write(b"partial")
            raise error()
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_torch_save_failing_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "checkpoint.pth"
    previous = {"model": torch.arange(10.0)}
    torch.save(previous, target)
    before = target.read_bytes()
    fdopen = os.fdopen
    monkeypatch.setattr(supernet_trainer.os, "fdopen",
                        lambda fd, mode: FailingFile(fdopen(fd, mode), limit=50_000))
    original = torch.save
    with pytest.raises((OSError, RuntimeError)):  # torch may re-raise it as RuntimeError
        with atomic_torch_save():
            assert torch.save is not original
            torch.save({"model": torch.randn(100_000)}, target)  # 400 kB > 50 kB
    assert torch.save is original  # restored on the error
    assert target.read_bytes() == before
    assert torch.equal(torch.load(target)["model"], previous["model"])
    assert leftovers(tmp_path) == []


def test_torch_save_to_a_file_object_is_passed_through(tmp_path):
    with atomic_torch_save(), open(tmp_path / "x.pth", "wb") as f:
        torch.save(torch.ones(3), f)
    assert torch.equal(torch.load(tmp_path / "x.pth"), torch.ones(3))
    assert leftovers(tmp_path) == []


SAVER = textwrap.dedent("""
    import sys, torch
    from espnet_supernet.train.supernet_trainer import atomic_torch_save
    target, atomic = sys.argv[1], sys.argv[2] == "atomic"
    big = torch.zeros(8_000_000)  # 32 MB: each save takes a while
    step = 0
    while True:
        step += 1
        big[0] = step
        print("saving", step, flush=True)
        if atomic:
            with atomic_torch_save():
                torch.save({"step": step, "weight": big}, target)
        else:
            torch.save({"step": step, "weight": big}, target)
""")


def kill_during_saves(target: Path, mode: str) -> None:
    """Starts a process that saves to ``target`` in a loop and SIGKILLs it mid-save."""
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target), mode],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # (the imports print warnings too)
            if line.startswith("saving") and int(line.split()[1]) == 3:
                break  # two saves done, the third started
        assert proc.poll() is None, "the saver died"
        time.sleep(0.01)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_sigkill_during_saves_leaves_a_loadable_checkpoint(tmp_path):
    target = tmp_path / "checkpoint.pth"
    kill_during_saves(target, "atomic")
    saved = torch.load(target)
    assert saved["step"] >= 2 and saved["weight"][0] == saved["step"]
    remove_stale_temp_files(tmp_path)
    assert leftovers(tmp_path) == []


def reporter_at(epochs_losses) -> Reporter:
    reporter = Reporter()
    for epoch, loss in enumerate(epochs_losses, start=1):
        reporter.set_epoch(epoch)
        with reporter.observe("valid") as sub:
            sub.register({"loss": loss})
            sub.next()
    return reporter


def write_killed_after_checkpoint(exp: Path, losses) -> dict:
    """An exp dir killed after saving ``checkpoint.pth`` of the last epoch, before its
    ``<N>epoch.pth`` and links; returns the checkpoint's model."""
    model = {"w": torch.full((3,), float(len(losses)))}
    reporter = reporter_at(losses)
    torch.save({"model": model, "reporter": reporter.state_dict()}, exp / "checkpoint.pth")
    for epoch in range(1, len(losses)):
        torch.save({"w": torch.full((3,), float(epoch))}, exp / f"{epoch}epoch.pth")
    (exp / "latest.pth").symlink_to(f"{len(losses) - 1}epoch.pth")
    return model


def test_restore_writes_the_missing_epoch_model_and_links(tmp_path):
    model = write_killed_after_checkpoint(tmp_path, [3.0, 1.0])  # epoch 2 is the best
    (tmp_path / "valid.loss.best.pth").symlink_to("1epoch.pth")
    (tmp_path / ".checkpoint.pth.0123456789abcdef.tmp").write_bytes(b"partial")
    (tmp_path / ".keep.tmp").write_bytes(b"not ours")
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == [
        ".checkpoint.pth.0123456789abcdef.tmp"]
    restore_epoch_files(tmp_path, BEST)
    assert torch.equal(torch.load(tmp_path / "2epoch.pth")["w"], model["w"])
    assert os.readlink(tmp_path / "latest.pth") == "2epoch.pth"
    assert os.readlink(tmp_path / "valid.loss.best.pth") == "2epoch.pth"
    assert leftovers(tmp_path) == [".keep.tmp"]


def test_restore_keeps_a_complete_epoch(tmp_path):
    write_killed_after_checkpoint(tmp_path, [1.0, 3.0])  # epoch 1 is the best
    torch.save({"w": torch.zeros(3)}, tmp_path / "2epoch.pth")
    (tmp_path / "latest.pth").unlink()
    restore_epoch_files(tmp_path, BEST)
    assert torch.equal(torch.load(tmp_path / "2epoch.pth")["w"], torch.zeros(3))
    assert os.readlink(tmp_path / "latest.pth") == "2epoch.pth"
    assert os.readlink(tmp_path / "valid.loss.best.pth") == "1epoch.pth"


def test_truncated_checkpoint_is_reported_with_what_to_do(tmp_path):
    write_killed_after_checkpoint(tmp_path, [1.0])
    data = (tmp_path / "checkpoint.pth").read_bytes()
    (tmp_path / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="checkpoint.pth.*delete it to restart"):
        restore_epoch_files(tmp_path, BEST)


def test_run_saves_atomically_and_repairs_before_resuming(tmp_path, monkeypatch):
    write_killed_after_checkpoint(tmp_path, [2.0, 1.0])
    (tmp_path / ".1epoch.pth.0123456789abcdef.tmp").write_bytes(b"partial")
    seen = {}

    def fake_run(cls, **kwargs):
        seen["atomic"] = torch.save.__module__ == supernet_trainer.__name__
        seen["files"] = sorted(p.name for p in tmp_path.iterdir())

    monkeypatch.setattr(Trainer, "run", classmethod(fake_run))
    options = SimpleNamespace(output_dir=str(tmp_path), resume=True, best_model_criterion=BEST)
    SupernetTrainer.run(None, [], [], None, None, None, options,
                        SimpleNamespace(distributed=False, dist_rank=0))
    assert seen["atomic"] and torch.save.__module__ == "torch.serialization"
    assert seen["files"] == ["1epoch.pth", "2epoch.pth", "checkpoint.pth", "latest.pth",
                             "valid.loss.best.pth"]
