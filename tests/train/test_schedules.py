"""15.9: cosine schedule with warm-up and the EMA of the generator's weights, both across a resume."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from srops.models.train import Trainer, run
from tests.train.helpers import tiny_cfg


def _cosine_cfg(out: Path, train: Path, val: Path | None) -> dict:
    cfg = tiny_cfg(out, train, val, iters=8, ckpt_every=3, ema_decay=0.9)
    cfg["schedule"] = {"name": "cosine", "warmup_iters": 2, "min_lr": 1e-5}
    return cfg


def test_cosine_warmup_values(tmp_path: Path, tiny_train: Path) -> None:
    cfg = _cosine_cfg(tmp_path, tiny_train, None)
    trainer, _ = run(cfg)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = type(trainer.sched)(opt, total=8, warmup=2, min_lr=1e-5)
    lrs = []
    for _ in range(9):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    expect = [1e-3 / 3, 2e-3 / 3] + [1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(7)]
    assert lrs == pytest.approx(expect)
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_cosine_and_ema_resume_identical(tmp_path: Path, tiny_train: Path, tiny_val: Path) -> None:
    straight, _ = run(_cosine_cfg(tmp_path / "a", tiny_train, tiny_val))
    cfg = _cosine_cfg(tmp_path / "b", tiny_train, tiny_val)
    first = Trainer(cfg)
    first.total = 3  # the first session ends at 3 of the schedule's 8 iterations
    first.fit()
    resumed, _ = run(cfg, resume=True)
    assert resumed.sched.get_last_lr() == pytest.approx(straight.sched.get_last_lr())
    for k, v in straight.ema.state_dict().items():
        assert torch.equal(v, resumed.ema.state_dict()[k]), k
    # the EMA really differs from the raw weights and is what best.pt holds
    assert any(not torch.equal(v, straight.net.state_dict()[k]) for k, v in straight.ema.state_dict().items())
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=False)["model"]
    assert any(not torch.equal(best[k], straight.net.state_dict()[k]) for k in best)
    with pytest.raises(ValueError, match="ema_decay"):
        run(tiny_cfg(tmp_path / "c", tiny_train, None, ema_decay=1.5))
