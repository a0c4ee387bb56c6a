"""Optimiser, learning-rate schedules and the weight EMA of ``srops.models.train``.

``schedule`` block:

* ``name: step`` (default): ``step_size`` iterations or ``step_epochs`` epochs, or ``milestones``; ``gamma``.
* ``name: cosine``: linear warm-up from 0 over ``warmup_iters``, then a half cosine from ``optim.lr`` down to
  ``min_lr`` (default 0) at the last iteration, or, with ``train.time_budget``, at the end of the budget,
  whichever comes first (the cosine follows the run's progress, by iterations or by time).
* ``progress_milestones`` / ``progress_gamma`` (either name): multiply the lr once the run is that far along,
  by iterations or by ``train.time_budget``, whichever is further.

``train.ema_decay``: keep an exponential moving average of the generator's weights (BasicSR evaluates it;
0.999 is its default); validation and ``best.pt`` use the average.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class WarmupCosineLR(torch.optim.lr_scheduler.LRScheduler):
    """lr(t) = factor · base · t / warmup for t < warmup, then factor · (min + (base − min) · (1 + cos(π · p)) / 2)
    with p = max((t − warmup) / (total − warmup), progress); constant ``min_lr`` after the end (closed form,
    resumable: ``progress`` and ``factor`` are part of the state).

    ``progress`` (set by :meth:`set_progress`) is the run's fraction done by another measure, the time budget,
    so that a time-limited run still anneals to ``min_lr``; ``factor`` carries ``progress_milestones`` decays.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, warmup: int = 0, min_lr: float = 0.0,
                 last_epoch: int = -1) -> None:
        if total < 1 or warmup < 0 or warmup > total:
            raise ValueError(f"srops.models.train: cosine schedule needs 0 <= schedule.warmup_iters <= iterations "
                             f"and iterations >= 1, got warmup {warmup} of {total}")
        self.total, self.warmup, self.min_lr = int(total), int(warmup), float(min_lr)
        self.progress, self.factor = 0.0, 1.0
        super().__init__(optimizer, last_epoch)

    def _lr(self, base: float, t: int) -> float:
        if t < self.warmup:
            return self.factor * base * (t + 1) / (self.warmup + 1)
        span = max(1, self.total - self.warmup)
        p = min(1.0, max((t - self.warmup) / span, self.progress))
        return self.factor * (self.min_lr + (base - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * p)))

    def get_lr(self) -> list[float | torch.Tensor]:  # LRScheduler's type; these are floats
        return [self._lr(float(base), self.last_epoch) for base in self.base_lrs]

    def set_progress(self, frac: float, factor: float = 1.0) -> None:
        """Record the run's progress ``frac`` (0..1, e.g. seconds / time budget) and the decay ``factor``;
        the optimiser's lr is recomputed for the next step."""
        self.progress, self.factor = max(self.progress, min(1.0, float(frac))), float(factor)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def make_optim(params, cfg: dict, sched: dict, iters_per_epoch: int, total: int | None = None):
    """Adam from ``cfg`` and the lr scheduler of ``sched`` (stepped once per iteration)."""
    opt = torch.optim.Adam(params, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]), eps=float(cfg["eps"]),
                           weight_decay=float(cfg.get("weight_decay", 0.0)))
    name = sched.get("name", "step")
    if name == "cosine":
        if total is None:
            raise ValueError("srops.models.train: the cosine schedule needs the number of iterations")
        return opt, WarmupCosineLR(opt, total, int(sched.get("warmup_iters") or 0), float(sched.get("min_lr") or 0))
    if name != "step":
        raise ValueError(f"srops.models.train: 'schedule.name' must be 'step' or 'cosine', got {name!r}")
    step = sched.get("step_size")
    if sched.get("step_epochs") is not None:
        step = int(sched["step_epochs"]) * iters_per_epoch
    if sched.get("milestones"):
        return opt, torch.optim.lr_scheduler.MultiStepLR(opt, [int(m) for m in sched["milestones"]],
                                                         float(sched["gamma"]))
    if step is None:  # was a TypeError from int(None)
        raise ValueError("srops.models.train: the step schedule needs 'schedule.step_size', 'schedule.step_epochs' "
                         "or 'schedule.milestones'")
    return opt, torch.optim.lr_scheduler.StepLR(opt, int(step), float(sched["gamma"]))


def progress_decay(opt: torch.optim.Optimizer, sched: dict, done: int, frac: float) -> int:
    """Apply the ``progress_milestones`` reached at progress ``frac`` beyond the ``done`` first ones;
    returns the new count of applied milestones."""
    marks = sched.get("progress_milestones") or []
    while done < len(marks) and frac >= float(marks[done]):
        for group in opt.param_groups:
            group["lr"] *= float(sched.get("progress_gamma", 0.5))
        done += 1
    return done


class ModelEMA:
    """θ_ema ← d · θ_ema + (1 − d) · θ after every step (buffers copied); ``module`` is the averaged copy."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"srops.models.train: 'train.ema_decay' must be in (0, 1), got {decay!r}")
        self.decay = float(decay)
        self.module = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        ema = self.module.state_dict()
        for key, value in net.state_dict().items():
            if value.dtype.is_floating_point:
                ema[key].lerp_(value.detach(), 1.0 - self.decay)
            else:
                ema[key].copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
