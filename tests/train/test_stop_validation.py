"""A validation due where a run stops is never lost: the checkpoint records it as pending (a stop signal
skips it; a process can die between checkpoint and validation) and the resumed run runs it first."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

import srops.models.train as train_mod
from srops.models.train import Trainer, run
from tests.train.helpers import logged, signal_at, tiny_cfg


def _record(out: Path) -> dict:
    return torch.load(out / "last.pt", weights_only=True)["validation"]


def test_sigterm_at_the_last_step_then_resume(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    straight, straight_res = run(tiny_cfg(tmp_path / "a", tiny_train, tiny_val, iters=6))
    out = tmp_path / "b"
    cfg = tiny_cfg(out, tiny_train, tiny_val, iters=6)
    res = signal_at(Trainer(cfg), 6, signal.SIGTERM).fit()
    assert res["stopped_by"] == "SIGTERM" and res["iteration"] == 6
    assert torch.load(out / "best.pt", weights_only=True)["iteration"] == 3
    assert _record(out) == {"last": 3, "pending": True}
    assert [i for i, _, _ in logged(out / "log.csv", "psnr")] == [3]
    resumed, res = run(cfg, resume=True)
    assert res["iteration"] == 6 and res["psnr"] == straight_res["psnr"]
    assert [i for i, _, _ in logged(out / "log.csv", "psnr")] == [3, 6]
    assert _record(out) == {"last": 6, "pending": False}
    assert torch.load(out / "best.pt", weights_only=True)["psnr"] == \
        torch.load(tmp_path / "a" / "best.pt", weights_only=True)["psnr"]
    sa, sb = straight.net.state_dict(), resumed.net.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # once done, a further --resume has nothing left to do
    _, res = run(cfg, resume=True)
    assert "psnr" not in res and [i for i, _, _ in logged(out / "log.csv", "psnr")] == [3, 6]


def test_sigterm_at_a_mid_run_validation(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_cfg(out, tiny_train, tiny_val, iters=6)
    signal_at(Trainer(cfg), 3, signal.SIGTERM).fit()
    assert _record(out) == {"last": None, "pending": True} and not (out / "best.pt").exists()
    run(cfg, resume=True)
    assert [i for i, _, _ in logged(out / "log.csv", "psnr")] == [3, 6] and (out / "best.pt").exists()


def test_stop_where_no_validation_is_due(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny_cfg(out, tiny_train, tiny_val, iters=6)
    signal_at(Trainer(cfg), 4, signal.SIGTERM).fit()
    assert _record(out) == {"last": 3, "pending": False}
    run(cfg, resume=True)
    assert [i for i, _, _ in logged(out / "log.csv", "psnr")] == [3, 6]


def test_death_between_checkpoint_and_validation(tmp_path: Path, tiny_train: Path, tiny_val: Path,
                                                 monkeypatch) -> None:
    """The process dies (here: an exception standing in for SIGKILL) after the final checkpoint, before its
    validation: resume validates, writes best.pt, and the result matches an uninterrupted run."""
    _, straight_res = run(tiny_cfg(tmp_path / "a", tiny_train, tiny_val, iters=6))
    out = tmp_path / "b"
    cfg = tiny_cfg(out, tiny_train, tiny_val, iters=6)
    cfg["val"]["every"] = 100  # the final validation is the only one
    real = Trainer.validate

    def killed(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod.Trainer, "validate", killed)
    with pytest.raises(KeyboardInterrupt):
        run(cfg)
    assert _record(out) == {"last": None, "pending": True} and not (out / "best.pt").exists()
    monkeypatch.setattr(train_mod.Trainer, "validate", real)
    _, res = run(cfg, resume=True)
    assert res["psnr"] == straight_res["psnr"] and (out / "best.pt").exists()
    assert [i for i, _, _ in logged(out / "log.csv", "psnr")] == [6]


def test_completed_run_records_its_validations(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    run(tiny_cfg(tmp_path, tiny_train, tiny_val, iters=6))
    assert _record(tmp_path) == {"last": 6, "pending": False} and (tmp_path / "best.pt").exists()
