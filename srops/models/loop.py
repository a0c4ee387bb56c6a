"""The iteration loop of :class:`srops.models.trainer.Trainer` (``Trainer.fit``).

Per iteration: one optimisation step; the ``progress_milestones`` decay; the logging window (means of
``loss`` and, for GANs, ``d_loss``); then the stop decisions, identical on every rank: the last iteration,
the time budget, a SIGTERM/SIGINT. The checkpoint due at an iteration is written first (recording whether a
validation is due there and has not run: ``pending``), then the validation runs, and the checkpoint is
written again to record it. A stop signal skips the validation, which stays pending; a resumed run (or one
whose process died between checkpoint and validation) runs a pending validation before anything else.
``train.time_budget`` covers everything: the run stops when one more step plus the final validation and
checkpoint (their last measured cost, or an estimate before the first) would not fit.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from srops.models.logs import Progress, RunLog
from srops.models.runstate import save_atomic
from srops.models.schedules import WarmupCosineLR, progress_decay
from srops.models.signals import StopSignals, ignore_stop_signals, signal_name
from srops.models.threads import DEFAULT_THREADS, ThreadTuner

if TYPE_CHECKING:
    from srops.models.trainer import Trainer


def _val_estimate(t: "Trainer", step_cost: float) -> float:
    """Seconds of one validation before any was measured: its LR pixels over a batch's, times a forward
    pass (about half a training step per pixel)."""
    if t.val is None:
        return 0.0
    pixels = sum(t.val.pairs.lr[k][0].numel() for k in range(len(t.val)))
    batch = int(t.cfg["data"]["batch_size"]) * int(t.cfg["data"]["lr_patch"]) ** 2
    return 0.5 * step_cost * pixels / max(1, batch)


def _any_rank(t: "Trainer", flag: bool) -> bool:
    if t.world <= 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=t.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def _val_crops(t: "Trainer", log: RunLog) -> None:
    """One centre crop per validation image, SR beside HR, into TensorBoard (``val_images/<name>``)."""
    from srops.models.evaluation import super_resolve

    side = max(1, int(t.cfg["val"].get("tb_crop") or 64) // t.scale)
    assert t.val is not None  # called after a validation
    for name, lr, hr in t.val:
        h, w = lr.shape[-2:]
        ch, cw = min(side, h), min(side, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        sr = super_resolve(t.eval_model, lr[..., top:top + ch, left:left + cw].to(t.device)).cpu()[0]
        s = t.scale
        ref = hr[0, :, top * s:(top + ch) * s, left * s:(left + cw) * s]
        log.image(f"val_images/{name}", torch.cat([sr.clamp(0, 1), ref], dim=-1), t.iteration)


def _validate(t: "Trainer", log: RunLog | None) -> dict[str, float]:
    res: dict[str, float] = {}
    if t.main:
        res = t.validate()
        if res:
            assert log is not None  # the main rank logs
            if res["psnr"] > t.best_psnr:  # best.pt first: a logged validation has its best.pt written
                t.best_psnr = res["psnr"]
                save_atomic({"model": t.eval_model.net.state_dict(), "config": t.cfg, "iteration": t.iteration,
                             "psnr": res["psnr"]}, t.out / "best.pt")
            log.scalars("val", t.iteration, t.seconds(), res)
            if log.writer is not None:
                _val_crops(t, log)
    if t.world > 1:
        dist.barrier()
    t.validated, t.val_pending = t.iteration, False
    return res


def fit(t: "Trainer") -> dict:
    """Train from ``t.iteration`` to ``t.total`` (or the budget, or a stop signal); returns the last
    validation result with ``iteration``, ``seconds``, ``stopped_early`` and ``stopped_by``. Releases the
    lock of ``out_dir`` when it ends."""
    try:
        return _fit(t)
    finally:
        t.release()


def _fit(t: "Trainer") -> dict:
    tc, dc = t.cfg["train"], t.cfg["data"]
    budget = None if tc.get("time_budget") is None else float(tc["time_budget"])
    t._t0 = t.clock()
    loader = torch.utils.data.DataLoader(
        _batches(t), batch_size=None, sampler=range(t.iteration, t.total),
        num_workers=int(dc.get("num_workers") or 0), pin_memory=t.device.type == "cuda",
        worker_init_fn=ignore_stop_signals)
    log = RunLog(t.out, t.resumed_from, bool(tc.get("tensorboard")), int(dc["iters_per_epoch"])) if t.main else None
    progress = Progress(t.main and bool(tc.get("progress")), t.total, t.iteration, t.out.name)
    if t.main:
        for note in t.notes:
            print(note, file=sys.stderr, flush=True)
    last: dict[str, Any] = {}
    sums: dict[str, float] = {}
    count = 0
    val_every, ckpt_every, log_every = int(t.cfg["val"]["every"]), int(tc["ckpt_every"]), int(tc["log_every"])
    step_cost, val_cost, ckpt_cost = 0.0, None, 0.0
    threads = tc.get("threads")
    if isinstance(threads, int):
        torch.set_num_threads(threads)
    tuner = ThreadTuner(DEFAULT_THREADS, t.clock) if threads == "auto" and t.device.type == "cpu" else None
    t.thread_tuner = tuner
    stopped_early, stopped_by = False, None
    with StopSignals() as stop:
        try:
            if t.val_pending and t.val is not None:  # the validation due at the checkpoint did not run
                last = _validate(t, log)
                t.save()
            t.val_pending = False
            mark = t.clock()
            for lr, hr in loader:
                if tuner is not None:
                    tuner.before_step()
                logs = t.step(lr, hr)
                t.iteration += 1
                it = t.iteration
                now = t.clock()  # an iteration's cost includes loading its batch
                if tuner is not None:
                    tuner.after_step(now - mark)
                step_cost = now - mark if step_cost == 0.0 else 0.8 * step_cost + 0.2 * (now - mark)
                frac = it / max(1, t.total)
                final = 0.0  # seconds the final checkpoint and validation will take
                if budget is not None:  # with validation, the checkpoint is written before and after it
                    final = (ckpt_cost * (2 if t.val is not None else 1)
                             + (val_cost if val_cost is not None else _val_estimate(t, step_cost)))
                if budget:
                    frac = max(frac, t.seconds() / budget)
                t.decays_done = progress_decay(t.opt, t.cfg["schedule"], t.decays_done, frac)
                if isinstance(t.sched, WarmupCosineLR):
                    # anneal by time too, reaching min_lr where the budget stops the run (one more step and the
                    # final checkpoint and validation would not fit); keep the milestone decays
                    stop_frac = (t.seconds() + step_cost + final) / budget if budget else 0.0
                    t.sched.set_progress(stop_frac, float(t.cfg["schedule"].get("progress_gamma", 0.5))
                                         ** t.decays_done)
                for key, value in logs.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                if t.main and (it % log_every == 0 or it == t.total):
                    values = {k: v / count for k, v in sums.items()}
                    values["lr"] = t.opt.param_groups[0]["lr"]
                    if tuner is not None:
                        values["threads"] = tuner.current
                    assert log is not None  # the main rank logs
                    log.scalars("train", it, t.seconds(), values)
                    progress.logged(it, t.seconds(), values)
                    sums, count = {}, 0
                progress.update()
                over = False
                if budget is not None:
                    over = _any_rank(t, t.seconds() + step_cost + final > budget)
                signum = stop.agreed(t.world, t.device)
                end = over or signum is not None or it == t.total
                t.val_pending = t.val is not None and (it % val_every == 0 or over or it == t.total)
                saved = it % ckpt_every == 0 or end
                if saved:
                    c0 = t.clock()
                    t.save()
                    ckpt_cost = t.clock() - c0
                if signum is not None:  # the checkpoint records a validation due here as pending
                    stopped_by = signal_name(signum)
                    break
                if t.val_pending:
                    v0 = t.clock()
                    last = _validate(t, log)
                    val_cost = t.clock() - v0
                    if saved:
                        t.save()  # the checkpoint of this iteration now records its validation as done
                if over:
                    stopped_early = True
                    break
                mark = t.clock()
        finally:
            progress.close()
            if log is not None:
                log.close()
    last.update({"iteration": t.iteration, "seconds": t.seconds(), "stopped_early": stopped_early,
                 "stopped_by": stopped_by})
    return last


class _StepBatches(torch.utils.data.Dataset):
    """Item ``step`` is this rank's share of global batch ``step`` (deterministic, resumable)."""

    def __init__(self, patches, batch_size: int, rank: int, world: int) -> None:
        self.patches, self.batch_size, self.rank, self.world = patches, batch_size, rank, world

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int):
        return self.patches.batch(step, self.batch_size, self.rank, self.world)


def _batches(t: "Trainer") -> _StepBatches:
    return _StepBatches(t.patches, int(t.cfg["data"]["batch_size"]), t.rank, t.world)
