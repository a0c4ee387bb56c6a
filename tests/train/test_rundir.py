"""The output folder of a training run: an earlier run is refused or archived, never overwritten; one run at
a time holds ``train.lock``; a stale lock is taken over; the lock goes away however the run ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import srops.models.data as data_mod
from srops.models.rundir import LOCK_NAME, RunDirError, RunLock, archive_name
from srops.models.train import Trainer, main, run
from tests.train.helpers import ROOT, signal_at, tiny_cfg, write_cfg


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_rerun_refused_then_archived(tmp_path: Path, tiny_train: Path, tiny_val: Path, capsys) -> None:
    """A second fresh run into a used out_dir is refused (nothing touched); --archive moves the earlier run."""
    out = tmp_path / "run"
    cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, tiny_val, iters=3, tensorboard=True))
    assert main(["-c", cfg_path]) == 0
    before = _snapshot(out)
    assert {"last.pt", "best.pt", "log.csv"} <= set(before)
    capsys.readouterr()
    assert main(["-c", cfg_path, "--set", "train.iters=1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and str(out) in err[0]
    assert "--resume" in err[0] and "--archive" in err[0] and "train.out_dir" in err[0]
    assert _snapshot(out) == before  # last.pt, best.pt, log.csv and the TensorBoard events untouched

    assert main(["-c", cfg_path, "--set", "train.iters=1", "--archive"]) == 0
    archived = sorted(tmp_path.glob("run_archived_*"))
    assert len(archived) == 1 and _snapshot(archived[0]) == before  # the whole earlier run, byte for byte
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] == 1
    assert "moved to" in capsys.readouterr().err
    # twice within a second: a second archive folder next to the first, nothing overwritten
    assert main(["-c", cfg_path, "--set", "train.iters=2", "--archive"]) == 0
    assert len(list(tmp_path.glob("run_archived_*"))) == 2 and _snapshot(archived[0]) == before
    with pytest.raises(SystemExit):  # argparse: the two contradict
        main(["-c", cfg_path, "--resume", "--archive"])


@pytest.mark.parametrize("leftover", ["best.pt", "log.csv", "tb/events.out.tfevents.1.host"])
def test_any_trace_of_a_run_counts(tmp_path: Path, tiny_train: Path, leftover: str) -> None:
    out = tmp_path / "run"
    (out / leftover).parent.mkdir(parents=True, exist_ok=True)
    (out / leftover).write_bytes(b"earlier")
    with pytest.raises(RunDirError, match="holds an earlier run"):
        run(tiny_cfg(out, tiny_train, None, iters=1))
    assert (out / leftover).read_bytes() == b"earlier" and not (out / LOCK_NAME).exists()


def test_unrelated_files_do_not_block(tmp_path: Path, tiny_train: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    run(tiny_cfg(out, tiny_train, None, iters=1))
    assert (out / "notes.txt").read_text() == "mine" and (out / "last.pt").exists()


def test_archive_name_is_collision_safe(tmp_path: Path) -> None:
    now = time.mktime((2026, 12, 6, 23, 15, 0, 0, 0, -1))
    first = archive_name(tmp_path / "amms_x2", now)
    assert first.name == "amms_x2_archived_20261206-231500"
    first.mkdir()
    second = archive_name(tmp_path / "amms_x2", now)
    assert second.name == "amms_x2_archived_20261206-231500-2"


def test_live_lock_refused_stale_lock_taken_over(tmp_path: Path, tiny_train: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / LOCK_NAME).write_text(f"{holder.pid}\n")
        cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=1))
        assert main(["-c", cfg_path]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and str(out) in err[0] and f"PID {holder.pid}" in err[0]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
        assert main(["-c", cfg_path, "--resume"]) == 1  # the lock comes before anything else, also on resume
    finally:
        holder.kill()
        holder.wait()
    assert main(["-c", cfg_path]) == 0  # its process is gone: the lock is stale
    err = capsys.readouterr().err
    assert "took over the stale lock" in err and str(holder.pid) in err
    assert (out / "last.pt").exists() and not (out / LOCK_NAME).exists()
    (out / LOCK_NAME).write_text(f"{_dead_pid()}\n")
    assert main(["-c", cfg_path, "--resume"]) == 0 and not (out / LOCK_NAME).exists()


def test_lock_is_exclusive_within_a_process(tmp_path: Path) -> None:
    first = RunLock(tmp_path).acquire()
    with pytest.raises(RunDirError, match=rf"in use.*PID {os.getpid()}"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()


def test_lock_released_however_the_run_ends(tmp_path: Path, tiny_train: Path, monkeypatch) -> None:
    # a stop signal
    trainer = signal_at(Trainer(tiny_cfg(tmp_path / "a", tiny_train, None, iters=50)), 2, signal.SIGINT)
    assert (tmp_path / "a" / LOCK_NAME).read_text().split() == [str(os.getpid())]
    assert trainer.fit()["stopped_by"] == "SIGINT"
    assert not (tmp_path / "a" / LOCK_NAME).exists()
    # an error in the set-up: the folder it created is removed again
    bad_val = tmp_path / "missing_val"
    with pytest.raises(ValueError):
        Trainer(tiny_cfg(tmp_path / "b", tiny_train, bad_val))
    assert not (tmp_path / "b").exists()
    # an error while training
    real = Trainer.step

    def failing(self, lr, hr):
        if self.iteration == 1:
            raise RuntimeError("boom")
        return real(self, lr, hr)

    monkeypatch.setattr(Trainer, "step", failing)
    with pytest.raises(RuntimeError, match="boom"):
        run(tiny_cfg(tmp_path / "c", tiny_train, None, iters=4))
    assert not (tmp_path / "c" / LOCK_NAME).exists()


def test_sigterm_during_setup_releases_lock(tmp_path: Path, tiny_train: Path, monkeypatch) -> None:
    """SIGTERM before the training loop (while the images load) exits with 143 and leaves no lock."""
    out = tmp_path / "run"
    real = data_mod.TrainPatches.__init__

    def terminated(self, *args, **kwargs):
        assert (out / LOCK_NAME).exists()
        os.kill(os.getpid(), signal.SIGTERM)
        real(self, *args, **kwargs)

    monkeypatch.setattr(data_mod.TrainPatches, "__init__", terminated)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc:
        main(["-c", write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=2))])
    assert exc.value.code == 128 + signal.SIGTERM
    assert not (out / LOCK_NAME).exists() and signal.getsignal(signal.SIGTERM) is before


def test_two_runs_at_once(tmp_path: Path, tiny_train: Path) -> None:
    """A second process into the same out_dir is refused with the first one's PID; the first one goes on and
    removes its lock when SIGTERM stops it."""
    out = tmp_path / "run"
    cfg_path = write_cfg(tmp_path / "c.yml", tiny_cfg(out, tiny_train, None, iters=10**6, ckpt_every=10**6,
                                                      log_every=1))
    cmd = [sys.executable, "-m", "srops.models.train", "-c", cfg_path]
    first = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 90
        while not ((out / "log.csv").exists() and (out / "log.csv").read_text().count("\n") > 2):
            assert first.poll() is None and time.monotonic() < end, first.communicate()[1][-2000:]
            time.sleep(0.2)
        second = subprocess.run(cmd + ["--resume"], env=_env(), cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        third = subprocess.run(cmd + ["--archive"], env=_env(), cwd=ROOT, capture_output=True, text=True,
                               timeout=120)
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    for other in (second, third):
        assert other.returncode == 1
        lines = other.stderr.strip().splitlines()
        assert lines[-1].startswith("error:") and f"PID {first.pid}" in lines[-1] and "Traceback" not in other.stderr
    assert first.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert not (out / LOCK_NAME).exists() and not list(tmp_path.glob("run_archived_*"))
    assert torch.load(out / "last.pt", weights_only=True)["iteration"] >= 2
