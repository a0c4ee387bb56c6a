"""15.9: cosine schedule with warm-up and the EMA of the generator's weights, both across a resume."""
from __future__ import annotations

import math
import signal
from pathlib import Path

import pytest
import torch

from srops.models.train import Trainer, run
from tests.train.helpers import FakeClock, signal_at, timed, tiny_cfg


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
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    assert any(not torch.equal(best[k], straight.net.state_dict()[k]) for k in best)
    with pytest.raises(ValueError, match="ema_decay"):
        run(tiny_cfg(tmp_path / "c", tiny_train, None, ema_decay=1.5))


def _clocked(trainer: Trainer, clock, step_s: float, lrs: list) -> Trainer:
    """Steps of ``step_s`` seconds on ``clock``; ``lrs`` gets the lr each step uses."""
    real = timed(trainer, clock, step_s).step

    def step(lr, hr):
        lrs.append(trainer.opt.param_groups[0]["lr"])
        return real(lr, hr)

    trainer.step = step
    return trainer


def test_cosine_anneals_over_the_time_budget(tmp_path: Path, tiny_train: Path) -> None:
    """16: a time-limited cosine run reaches min_lr where the budget stops it, not at train.iters."""
    clock = FakeClock()
    cfg = tiny_cfg(tmp_path, tiny_train, None, iters=1000, ckpt_every=10**6, time_budget=20.0)
    cfg["schedule"] = {"name": "cosine", "warmup_iters": 2, "min_lr": 0.0}
    lrs: list[float] = []
    res = _clocked(Trainer(cfg, clock=clock), clock, 1.0, lrs).fit()
    assert res["stopped_early"] and 18 <= res["iteration"] <= 20
    assert lrs[:2] == pytest.approx([1e-3 / 3, 2e-3 / 3])
    after = lrs[2:]
    assert all(a >= b for a, b in zip(after, after[1:]))  # monotone after the warm-up
    assert after[0] > 0.9e-3 and after[-1] < 0.03e-3  # the full half cosine within the budget
    mid = after[len(after) // 2]
    assert 0.3e-3 < mid < 0.7e-3


def test_cosine_time_progress_resumes(tmp_path: Path, tiny_train: Path) -> None:
    """The time progress is part of the scheduler state: a resumed session continues the same curve."""
    clock = FakeClock()
    cfg = tiny_cfg(tmp_path, tiny_train, None, iters=1000, ckpt_every=10**6, time_budget=20.0)
    cfg["schedule"] = {"name": "cosine", "warmup_iters": 0, "min_lr": 0.0, "progress_milestones": [0.5],
                       "progress_gamma": 0.5}
    lrs: list[float] = []
    first = signal_at(_clocked(Trainer(cfg, clock=clock), clock, 1.0, lrs), 8, signal.SIGTERM)
    assert first.fit()["stopped_by"] == "SIGTERM"
    lr_saved = first.opt.param_groups[0]["lr"]
    second = _clocked(Trainer(cfg, resume=True, clock=clock), clock, 1.0, lrs)
    assert second.opt.param_groups[0]["lr"] == pytest.approx(lr_saved)
    assert second.opt.param_groups[0]["lr"] < 0.75e-3  # by time, not by 8 of 1000 iterations
    second.fit()
    assert second.decays_done == 1
    # the milestone halves the cosine from there on instead of being undone by the next step
    p = (11 + 1.0) / 20  # seconds after step 11, one more step: the fraction the schedule saw
    assert lrs[11] == pytest.approx(0.5 * 1e-3 * 0.5 * (1 + math.cos(math.pi * p)), rel=0.05)


def test_channels_last_training_matches_default_layout(tmp_path: Path, tiny_train: Path) -> None:
    """train.channels_last: the network is NHWC, the losses match the default layout's, and the
    checkpoint loads into a plain network."""
    from srops.models import build

    a, _ = run(tiny_cfg(tmp_path / "a", tiny_train, None, iters=4, log_every=1))
    b, _ = run(tiny_cfg(tmp_path / "b", tiny_train, None, iters=4, log_every=1, channels_last=True))
    convs = [m.weight for m in b.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs
                         if w.shape[-1] > 1)
    for (ka, va), (kb, vb) in zip(a.net.state_dict().items(), b.net.state_dict().items()):
        assert ka == kb and torch.allclose(va, vb, rtol=1e-4, atol=1e-6), ka
    plain = build("tiny_sr", scale=2)
    plain.load_state_dict(torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"])
