"""Shared pieces of the training tests: a tiny config, a fake clock, log readers."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import yaml

from srops.models.train import load_config

ROOT = Path(__file__).resolve().parents[2]


def tiny_cfg(out: Path, train_dir: Path, val_dir: Path | None, **train_kw) -> dict:
    cfg = load_config(None)
    cfg["model"] = {"name": "tiny_sr", "scale": 2, "imports": ["tests.train.tinynet"]}
    cfg["data"].update({"train": [str(train_dir)], "val": [str(val_dir)] if val_dir else None, "lr_patch": 8,
                        "batch_size": 4, "iters_per_epoch": 5})
    cfg["optim"]["lr"] = 1e-3
    cfg["schedule"] = {"step_size": 3, "gamma": 0.5}
    cfg["train"].update({"iters": 6, "out_dir": str(out), "log_every": 2, "ckpt_every": 3, "progress": False,
                         "tensorboard": False, **train_kw})
    cfg["val"]["every"] = 3
    return cfg


def write_cfg(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


class FakeClock:
    """A clock the test advances by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def log_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def logged(path: Path, metric: str) -> list[tuple[int, float, float]]:
    """(iteration, value, seconds) of every ``metric`` row of a log.csv (either layout this project wrote)."""
    rows = log_rows(path)
    if rows and "metric" in rows[0]:
        return [(int(r["iteration"]), float(r["value"]), float(r["seconds"])) for r in rows if r["metric"] == metric]
    return [(int(r["iteration"]), float(r[metric]), float(r["seconds"])) for r in rows if r.get(metric)]


def timed(trainer, clock: FakeClock, step_s: float = 1.0, val_s: float = 0.0, save_s: float = 0.0):
    """``trainer`` with each step, validation and checkpoint advancing ``clock`` by the given seconds."""
    real_step, real_val, real_save = trainer.step, trainer.validate, trainer.save

    def step(lr, hr):
        clock.now += step_s
        return real_step(lr, hr)

    def validate():
        clock.now += val_s
        return real_val()

    def save():
        clock.now += save_s
        return real_save()

    trainer.step, trainer.validate, trainer.save = step, validate, save
    return trainer


def signal_at(trainer, iteration: int, signum: int):
    """``trainer`` sending ``signum`` to this process right after the step that reaches ``iteration``."""
    real = trainer.step

    def step(lr, hr):
        out = real(lr, hr)
        if trainer.iteration + 1 == iteration:  # the loop counts the step after it returns
            os.kill(os.getpid(), signum)
        return out

    trainer.step = step
    return trainer
