"""Training never loses progress: small validation images, stop signals, time budget across resumes,
stale temporary files, logs after a resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import srops.models.train as train_mod
from srops.models.data import ValImages
from srops.models.train import Trainer, run
from tests.train.conftest import write_folder
from tests.train.helpers import ROOT, FakeClock, logged, signal_at, timed, tiny_cfg, write_cfg


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def test_small_validation_image_rejected_at_build(tmp_path: Path, tiny_train: Path) -> None:
    """14.8: a validation image without SSIM's 11x11 window after the border shave fails before training."""
    val = write_folder(tmp_path / "val", [(48, 44), (14, 40)], seed=3)
    with pytest.raises(ValueError, match=r"img1\.png.*too small.*SSIM"):
        ValImages(val, 4)
    ValImages(val, 2, crop_border=0)  # 14x40 keeps SSIM's window without shaving
    with pytest.raises(ValueError, match=r"img1\.png"):
        Trainer(tiny_cfg(tmp_path / "run", tiny_train, val))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_checkpoint_written_before_validation(tmp_path: Path, tiny_train: Path, tiny_val: Path, monkeypatch) -> None:
    """14.8: the checkpoint due at an iteration is on disk before that iteration's validation runs."""
    def broken(self):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(train_mod.Trainer, "validate", broken)
    with pytest.raises(RuntimeError, match="validation failed"):
        run(tiny_cfg(tmp_path, tiny_train, tiny_val, iters=6, ckpt_every=3))
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 3


def _wait_for_rows(log: Path, rows: int, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.communicate()[1][-2000:]}")
        if log.exists() and log.read_text().count("\n") > rows:
            return
        time.sleep(0.2)
    raise AssertionError("training did not log in time")


def test_sigint_in_process_saves_and_returns(tmp_path: Path, tiny_train: Path) -> None:
    """14.9: Ctrl-C (SIGINT) during a step: the step finishes, a checkpoint is written, fit returns."""
    trainer = signal_at(Trainer(tiny_cfg(tmp_path, tiny_train, None, iters=100, ckpt_every=100)), 2, signal.SIGINT)
    # whatever the process had before (default_int_handler; SIG_IGN when started in the background by a
    # shell without job control) is what it has after
    before = signal.getsignal(signal.SIGINT)
    res = trainer.fit()
    assert res["stopped_by"] == "SIGINT" and res["iteration"] == 2
    assert torch.load(tmp_path / "last.pt", weights_only=True)["iteration"] == 2
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


@pytest.mark.parametrize("signum", [signal.SIGTERM], ids=["SIGTERM"])
def test_signal_saves_then_exits(tmp_path: Path, tiny_train: Path, signum) -> None:
    """14.9: SIGTERM writes a checkpoint of the iteration reached, then the process exits (128 + 15).
    The signal goes to the whole process group, DataLoader workers included, as a batch scheduler sends it."""
    cfg = tiny_cfg(tmp_path / "run", tiny_train, None, iters=10**6, ckpt_every=10**6, log_every=1)
    cfg["data"]["num_workers"] = 1
    cmd = [sys.executable, "-m", "srops.models.train", "-c", write_cfg(tmp_path / "c.yml", cfg)]
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _wait_for_rows(tmp_path / "run" / "log.csv", 3, proc)
        os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in err
    st = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert st["iteration"] >= 3
    assert max(i for i, _, _ in logged(tmp_path / "run" / "log.csv", "loss")) <= st["iteration"] + 1


def _children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(d.name))
    return kids


def test_sigterm_one_torchrun_rank_stops_all(tmp_path: Path, tiny_train: Path) -> None:
    """14.9: SIGTERM to rank 1 alone: both ranks stop after the same iteration, rank 0 saves."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_cfg(tmp_path / "run", tiny_train, None, iters=10**6, ckpt_every=10**6, log_every=1, device="cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={port}", "-m", "srops.models.train", "-c", write_cfg(tmp_path / "c.yml", cfg)]
    env = {**_env(), "TORCHELASTIC_ERROR_FILE": str(tmp_path / "err.json")}
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_rows(tmp_path / "run" / "log.csv", 3, proc, timeout=120)
        ranks = {}
        for pid in _children(proc.pid):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            rank = [e for e in environ if e.startswith(b"RANK=")]
            if rank:
                ranks[int(rank[0][5:])] = pid
        os.kill(ranks[1], signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert "stopped by SIGTERM" in err, err[-3000:]
    st = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert st["iteration"] >= 3


def test_time_budget_continues_after_resume(tmp_path: Path, tiny_train: Path) -> None:
    """14.10: elapsed training time is stored and the resumed run stops against the same budget."""
    clock = FakeClock()
    cfg = tiny_cfg(tmp_path, tiny_train, None, iters=1000, ckpt_every=1000, time_budget=10.0)
    cfg["schedule"] = {"step_size": 10**9, "gamma": 1.0, "progress_milestones": [0.5], "progress_gamma": 0.1}
    # the first session is preempted after 4 s of its 10 s budget
    first = signal_at(timed(Trainer(cfg, clock=clock), clock), 4, signal.SIGTERM)
    res = first.fit()
    assert res["iteration"] == 4 and res["stopped_by"] == "SIGTERM" and torch.load(tmp_path / "last.pt", weights_only=True)["elapsed"] == 4.0
    second = timed(Trainer(cfg, resume=True, clock=clock), clock)
    assert second.opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    res = second.fit()
    assert res["stopped_early"] and res["seconds"] <= 10.0
    assert res["iteration"] == 10  # 4 + 6 more steps of 1 s: the budget counts the first session's 4 s
    assert second.decays_done == 1 and second.opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    seconds = [s for _, _, s in logged(tmp_path / "log.csv", "loss")]
    assert seconds == sorted(seconds) and seconds[-1] > 4.0  # 15.8: seconds continue across resumes


def test_time_budget_includes_final_validation_and_checkpoint(tmp_path: Path, tiny_train: Path,
                                                               tiny_val: Path) -> None:
    """15.6: the run stops early enough that the final validation and checkpoint fit in the budget."""
    clock = FakeClock()
    cfg = tiny_cfg(tmp_path, tiny_train, tiny_val, iters=1000, ckpt_every=3, time_budget=20.0)
    cfg["val"]["every"] = 4
    trainer = timed(Trainer(cfg, clock=clock), clock, step_s=1.0, val_s=3.0, save_s=0.5)
    res = trainer.fit()
    assert res["stopped_early"] and "psnr" in res
    assert res["seconds"] <= 20.0, res
    assert res["seconds"] >= 20.0 - 1.0 - 3.0 - 0.5 - 0.5  # and it used the budget


def test_stale_temporary_checkpoints_removed(tmp_path: Path, tiny_train: Path) -> None:
    """14.11: a '.last.pt.tmp<PID>' left by a killed process is deleted on start; a live one is kept."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / f".last.pt.tmp{int(dead.stdout)}"
    stale.write_bytes(b"partial")
    stale_best = tmp_path / f".best.pt.tmp{int(dead.stdout)}"
    stale_best.write_bytes(b"partial")
    live = tmp_path / f".last.pt.tmp{os.getppid()}"
    live.write_bytes(b"being written")
    run(tiny_cfg(tmp_path, tiny_train, None, iters=1))
    assert not stale.exists() and not stale_best.exists() and live.exists()
    assert (tmp_path / "last.pt").exists()


def test_logs_truncated_to_checkpoint_on_resume(tmp_path: Path, tiny_train: Path, tiny_val: Path,
                                                monkeypatch) -> None:
    """14.12: rows logged after the checkpoint by a run that died are dropped on resume (CSV, TensorBoard)."""
    real = train_mod.Trainer.step
    calls = {"n": 0}

    def dying(self, lr, hr):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # the process dies after iteration 5; the checkpoint is at 3
        return real(self, lr, hr)

    monkeypatch.setattr(train_mod.Trainer, "step", dying)
    cfg = tiny_cfg(tmp_path, tiny_train, tiny_val, iters=8, ckpt_every=3, log_every=1, tensorboard=True)
    cfg["val"]["every"] = 2
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert [i for i, _, _ in logged(tmp_path / "log.csv", "loss")] == [1, 2, 3, 4, 5]
    monkeypatch.setattr(train_mod.Trainer, "step", real)
    run(cfg, resume=True)
    assert [i for i, _, _ in logged(tmp_path / "log.csv", "loss")] == list(range(1, 9))
    assert [i for i, _, _ in logged(tmp_path / "log.csv", "psnr")] == [2, 4, 6, 8]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))
