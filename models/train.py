"""Train an SR network from a YAML experiment file.

    python -m srops.models.train -c models/configs/amms_x2.yml [--set key.path=value ...] [--resume]
    torchrun --nproc_per_node=2 -m srops.models.train -c ...      # DistributedDataParallel

The YAML blocks mirror constructor arguments: ``model`` ({name, scale, **kwargs} for
``srops.models.build``), ``data`` (folders, patch, batch), ``optim`` (Adam), ``schedule`` (step decay),
``loss``, ``train`` (iterations, precision, clipping, output folder), ``val`` and, for GAN training,
``gan``. Every key not given takes its value from :data:`DEFAULTS`. ``--set`` values are parsed as YAML.

Checkpoints (``<out_dir>/last.pt``) are written atomically and hold model, optimiser, scheduler, grad
scaler, the torch / numpy / python RNG states, the sampler position and the iteration, so ``--resume``
continues exactly where the run stopped. A non-finite loss stops training with
:class:`NonFiniteLossError` before anything is saved; the last good checkpoint stays untouched.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from srops.models import build
from srops.models.config import DEFAULTS, load_config, parse_yaml  # noqa: F401  (re-exported)
from srops.models.data import TrainPatches, ValImages
from srops.models.objectives import GanObjective, NetIO, content_loss, model_rgb_range
from srops.models.test import evaluate

class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def import_modules(names) -> None:
    """Import the modules listed in ``model.imports`` (networks registered outside srops.models)."""
    import importlib

    for name in names or []:
        importlib.import_module(name)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file in the same folder, then os.replace onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _make_optim(params, cfg: dict, sched: dict, iters_per_epoch: int):
    opt = torch.optim.Adam(params, lr=float(cfg["lr"]), betas=tuple(cfg["betas"]), eps=float(cfg["eps"]),
                           weight_decay=float(cfg.get("weight_decay", 0.0)))
    step = sched.get("step_size")
    if sched.get("step_epochs") is not None:
        step = int(sched["step_epochs"]) * iters_per_epoch
    if sched.get("milestones"):
        return opt, torch.optim.lr_scheduler.MultiStepLR(opt, [int(m) for m in sched["milestones"]],
                                                         float(sched["gamma"]))
    return opt, torch.optim.lr_scheduler.StepLR(opt, int(step), float(sched["gamma"]))


class _StepBatches(torch.utils.data.Dataset):
    """Item ``step`` is this rank's share of global batch ``step`` (deterministic, resumable)."""

    def __init__(self, patches: TrainPatches, batch_size: int, rank: int, world: int) -> None:
        self.patches, self.batch_size, self.rank, self.world = patches, batch_size, rank, world

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int):
        return self.patches.batch(step, self.batch_size, self.rank, self.world)


class Trainer:
    """One experiment: builds everything from ``cfg`` and runs :meth:`fit`."""

    def __init__(self, cfg: dict, resume: bool = False) -> None:
        self.cfg = cfg
        tc = cfg["train"]
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        use_cuda = torch.cuda.is_available() and tc["device"] in ("auto", "cuda")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.set_device(self.device)
        self.main = self.rank == 0
        self.out = Path(tc["out_dir"])
        self.ckpt_path = self.out / "last.pt"
        if resume and not self.ckpt_path.is_file():
            raise FileNotFoundError(f"srops.models.train: --resume given but checkpoint "
                                    f"{str(self.ckpt_path)!r} does not exist")
        seed = int(tc["seed"])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        m = dict(cfg["model"])
        import_modules(m.pop("imports", None))
        self.scale = int(m.pop("scale"))
        name = m.pop("name")
        self.net = build(name, scale=self.scale, **m).to(self.device)
        io_range = model_rgb_range(name, m)
        self.eval_model = NetIO(self.net, io_range)
        train_model = NetIO(self.net, io_range, pyramid=bool(cfg["loss"].get("pyramid", False)))
        dc = cfg["data"]
        self.patches = TrainPatches(dc["train"], self.scale, int(dc["lr_patch"]), bool(dc["augment"]),
                                    seed=seed, cache_dir=dc.get("cache_dir"))
        self.val = ValImages(cfg["val"]["folders"] if cfg["val"].get("folders") else dc["val"], self.scale,
                             cache_dir=dc.get("cache_dir"), max_images=cfg["val"].get("max_images")) \
            if (dc.get("val") or cfg["val"].get("folders")) else None
        ipe = int(dc["iters_per_epoch"])
        if tc.get("iters") is None and tc.get("epochs") is None:
            raise ValueError("srops.models.train: give 'train.iters' or 'train.epochs', got neither")
        self.total = int(tc["iters"]) if tc.get("iters") is not None else int(tc["epochs"]) * ipe
        self.opt, self.sched = _make_optim(self.net.parameters(), cfg["optim"], cfg["schedule"], ipe)
        amp = tc.get("amp")
        if amp not in (None, "bf16", "fp16"):
            raise ValueError(f"srops.models.train: 'train.amp' must be null, 'bf16' or 'fp16', got {amp!r}")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.gan = None
        if cfg.get("gan"):
            self.gan = GanObjective(cfg["gan"], self.scale, self.device, ipe)
        self.model: nn.Module = train_model
        if self.world > 1:
            ids = [self.device.index] if use_cuda else None
            self.model = nn.parallel.DistributedDataParallel(train_model, device_ids=ids)
            if self.gan is not None:
                self.gan.wrap_ddp(ids)
        self.iteration = 0
        self.decays_done = 0  # progress_milestones already applied
        self.best_psnr = -math.inf
        if resume:
            self._load(self.ckpt_path)

    # ---- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict:
        st = {"iteration": self.iteration, "config": self.cfg, "model": self.net.state_dict(),
              "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
              "scaler": self.scaler.state_dict(), "rng": _rng_state(),
              "sampler": {"next_step": self.iteration, "seed": self.patches.seed}, "best_psnr": self.best_psnr,
              "decays_done": self.decays_done}
        if self.gan is not None:
            st["gan"] = self.gan.state_dict()
        return st

    def _load(self, path: Path) -> None:
        from srops.models import checkpoint as ck

        who = "srops.models.train"
        st = ck.load_checkpoint(path, map_location=self.device, who=who)
        ck.require_keys(st, ("model", *ck.TRAINING_KEYS) + (("gan",) if self.gan is not None else ()), path,
                        "--resume", who)
        ck.load_weights(self.net, st["model"], path, f"the network of this config ({self.cfg['model']['name']!r})",
                        who)
        for entry, obj in (("optimizer", self.opt), ("scheduler", self.sched), ("scaler", self.scaler)) + (
                (("gan", self.gan),) if self.gan is not None else ()):
            ck.load_state(obj, st[entry], path, entry, who)
        rng = st["rng"]
        rng["torch"] = rng["torch"].cpu()
        if "cuda" in rng:
            rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        _set_rng_state(rng)
        self.iteration = int(st["sampler"]["next_step"])
        self.best_psnr = float(st.get("best_psnr", -math.inf))
        self.decays_done = int(st.get("decays_done", 0))

    def save(self) -> None:
        if not self.main:
            return
        for p in self.net.parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteLossError("srops.models.train: parameters are not finite; checkpoint not written")
        save_atomic(self.state(), self.ckpt_path)

    # ---- one step ------------------------------------------------------------------------------
    def step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        self.net.train()
        lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                  enabled=self.amp_dtype is not None)
        logs: dict[str, float] = {}
        if self.gan is not None:
            with autocast:
                sr = self.model(lr)
            logs["d_loss"] = self.gan.discriminator_step(sr, hr, autocast, self.scaler)
        with autocast:
            sr = self.model(lr) if self.gan is None else sr
            loss = content_loss(self.cfg["loss"], sr, hr)
            if self.gan is not None:
                loss = loss + self.gan.generator_adversarial(sr)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"srops.models.train: loss is {value} at iteration {self.iteration + 1}; training stopped, "
                f"the last good checkpoint {str(self.ckpt_path)!r} was kept"
                + ("" if self.ckpt_path.exists() else " (none written yet)"))
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        clip = self.cfg["train"].get("grad_clip")
        if clip:
            self.scaler.unscale_(self.opt)
            nn.utils.clip_grad_norm_(self.net.parameters(), float(clip))
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if self.gan is not None:
            self.gan.sched_step()
        logs["loss"] = value
        return logs

    def validate(self) -> dict[str, float]:
        if self.val is None:
            return {}
        crop = self.cfg["val"].get("crop_border")
        res = evaluate(self.eval_model, self.val, self.scale, self.device,
                       crop_border=self.scale if crop is None else int(crop))
        return {"psnr": res["psnr"], "ssim": res["ssim"]}

    # ---- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        tc, dc = self.cfg["train"], self.cfg["data"]
        budget = tc.get("time_budget")
        t0 = time.perf_counter()
        loader = torch.utils.data.DataLoader(
            _StepBatches(self.patches, int(dc["batch_size"]), self.rank, self.world), batch_size=None,
            sampler=range(self.iteration, self.total), num_workers=int(dc.get("num_workers") or 0),
            pin_memory=self.device.type == "cuda")
        bar = writer = None
        csv_fh = None
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            new = not (self.out / "log.csv").exists()
            csv_fh = open(self.out / "log.csv", "a", newline="")
            log = csv.writer(csv_fh)
            if new:
                log.writerow(["iteration", "epoch", "loss", "lr", "psnr", "ssim", "seconds"])
            if tc.get("tensorboard"):
                try:
                    from torch.utils.tensorboard import SummaryWriter
                    writer = SummaryWriter(str(self.out / "tb"))
                except ImportError:
                    writer = None
            if tc.get("progress"):
                from tqdm import tqdm
                bar = tqdm(total=self.total, initial=self.iteration, desc=self.out.name, dynamic_ncols=True,
                           file=sys.stderr)
        last: dict[str, float] = {}
        running, count = 0.0, 0
        val_every, ckpt_every = int(self.cfg["val"]["every"]), int(tc["ckpt_every"])
        ipe = int(dc["iters_per_epoch"])
        stopped_early = False
        try:
            for lr, hr in loader:
                logs = self.step(lr, hr)
                self.iteration += 1
                self._progress_decay(time.perf_counter() - t0, budget)
                running, count = running + logs["loss"], count + 1
                it = self.iteration
                if self.main and (it % int(tc["log_every"]) == 0 or it == self.total):
                    avg = running / count
                    running, count = 0.0, 0
                    cur_lr = self.opt.param_groups[0]["lr"]
                    log.writerow([it, it / ipe, f"{avg:.6g}", f"{cur_lr:.3g}", "", "",
                                  f"{time.perf_counter() - t0:.1f}"])
                    csv_fh.flush()
                    if writer is not None:
                        writer.add_scalar("train/loss", avg, it)
                        writer.add_scalar("train/lr", cur_lr, it)
                        if "d_loss" in logs:
                            writer.add_scalar("train/d_loss", logs["d_loss"], it)
                    if bar is not None:
                        bar.set_postfix(loss=f"{avg:.4f}")
                if bar is not None:
                    bar.update(1)
                over = budget is not None and time.perf_counter() - t0 > float(budget)
                if budget is not None and self.world > 1:  # every rank must stop at the same iteration
                    flag = torch.tensor([1.0 if over else 0.0], device=self.device)
                    dist.all_reduce(flag)
                    over = bool(flag.item() > 0)
                if it % val_every == 0 or it == self.total or over:
                    last = self._validate_and_log(log if self.main else None, csv_fh, writer, t0)
                if it % ckpt_every == 0 or it == self.total or over:
                    self.save()
                    if self.world > 1:
                        dist.barrier()
                if over:
                    stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
            if csv_fh is not None:
                csv_fh.close()
        last.update({"iteration": self.iteration, "seconds": time.perf_counter() - t0,
                     "stopped_early": stopped_early})
        return last

    def _progress_decay(self, elapsed: float, budget) -> None:
        """``schedule.progress_milestones``: multiply the lr by ``schedule.progress_gamma`` once the run is
        that far along, by iterations or by the time budget, whichever is further (time-budgeted runs)."""
        marks = self.cfg["schedule"].get("progress_milestones") or []
        frac = self.iteration / max(1, self.total)
        if budget:
            frac = max(frac, elapsed / float(budget))
        while self.decays_done < len(marks) and frac >= float(marks[self.decays_done]):
            for group in self.opt.param_groups:
                group["lr"] *= float(self.cfg["schedule"].get("progress_gamma", 0.5))
            self.decays_done += 1

    def _validate_and_log(self, log, csv_fh, writer, t0) -> dict[str, float]:
        res: dict[str, float] = {}
        if self.main:
            res = self.validate()
            if res:
                log.writerow([self.iteration, self.iteration / int(self.cfg["data"]["iters_per_epoch"]), "", "",
                              f"{res['psnr']:.4f}", f"{res['ssim']:.5f}", f"{time.perf_counter() - t0:.1f}"])
                csv_fh.flush()
                if writer is not None:
                    writer.add_scalar("val/psnr", res["psnr"], self.iteration)
                    writer.add_scalar("val/ssim", res["ssim"], self.iteration)
                if res["psnr"] > self.best_psnr:
                    self.best_psnr = res["psnr"]
                    save_atomic({"model": self.net.state_dict(), "config": self.cfg, "iteration": self.iteration,
                                 "psnr": res["psnr"]}, self.out / "best.pt")
        if self.world > 1:
            dist.barrier()
        return res


def run(cfg: dict, resume: bool = False) -> tuple[Trainer, dict[str, float]]:
    """Build a :class:`Trainer` from ``cfg`` and train; returns it and the last validation result."""
    trainer = Trainer(cfg, resume=resume)
    return trainer, trainer.fit()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m srops.models.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("-c", "--config", required=True, help="experiment YAML (models/configs/*.yml)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config entry, e.g. --set train.iters=10 (repeatable)")
    ap.add_argument("--resume", action="store_true", help="continue from <train.out_dir>/last.pt")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        _, res = run(cfg, resume=args.resume)
    except (FileNotFoundError, ValueError, NonFiniteLossError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
