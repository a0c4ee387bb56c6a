"""The training loop behind ``python -m srops.models.train``: :class:`Trainer`.

A checkpoint (``<out_dir>/last.pt``) holds model, optimiser, scheduler, grad scaler, the EMA weights, the
torch / numpy / python RNG states, the sampler position, the iteration and the elapsed training time, so
``resume=True`` continues exactly where the run stopped, against the same ``train.time_budget``. The
checkpoint due at an iteration is written before that iteration's validation. SIGTERM/SIGINT save a
checkpoint and stop (``stopped_by``); a validation due at that iteration is recorded in the checkpoint as
pending and runs first thing on resume (``validation: {"last": iteration of the last validation, "pending":
bool}``). ``out_dir`` is locked while the run trains into it and a fresh run refuses a folder that holds an
earlier run unless ``archive`` is set (see :mod:`srops.models.rundir`). A non-finite loss stops training with
:class:`NonFiniteLossError` before anything is saved; the last good checkpoint stays untouched.
"""
from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from srops.models import build
from srops.models.config import check_keys, check_values, resolve_folder, upgrade_keys
from srops.models.data import TrainPatches, ValImages
from srops.models.loop import fit as _fit_loop
from srops.models.objectives import ContentLoss, GanObjective, NetIO, model_rgb_range
from srops.models.registry import import_modules
from srops.models.rundir import RunLock, archive_run, earlier_run, refuse_earlier_run
from srops.models.runstate import clean_stale_temporaries, rng_state, save_atomic, set_rng_state
from srops.models.schedules import ModelEMA, make_optim
from srops.models.threads import ThreadTuner, check_threads


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def build_network(name: str, scale: int, kwargs: dict) -> nn.Module:
    """``build(name, scale=scale, **kwargs)``; a ValueError naming the ``model`` key that the network's
    constructor refused (its value and the type of the constructor's default) instead of a traceback."""
    try:
        return build(name, scale=scale, **kwargs)
    except (TypeError, ValueError, AttributeError, RuntimeError) as exc:
        import inspect

        from srops.models.registry import _REGISTRY

        params = inspect.signature(_REGISTRY[name].__init__).parameters if name in _REGISTRY else {}
        culprits = []
        for key, value in kwargs.items():
            default = params[key].default if key in params else inspect.Parameter.empty
            if default not in (inspect.Parameter.empty, None) and not _same_kind(value, default):
                culprits.append(f"model.{key}={value!r} is a {type(value).__name__} where the constructor's "
                                f"default is {default!r}, a {type(default).__name__}")
        keys = "; ".join(culprits) or ", ".join(f"model.{k}={v!r}" for k, v in kwargs.items()) or "no arguments"
        raise ValueError(f"srops.models.train: cannot build network {name!r} ×{scale} from the config's "
                         f"model block ({keys}): {type(exc).__name__}: {exc}") from exc


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, type(default))
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _folders(value) -> list[str]:
    return [resolve_folder(f) for f in ([value] if isinstance(value, (str, os.PathLike)) else value)]


class Trainer:
    """One experiment: builds everything from ``cfg`` and runs :meth:`fit`.

    ``clock`` (seconds, monotonic) measures training time; tests pass a fake one. ``archive``: a fresh run
    into a folder that holds an earlier run renames that folder (``<out_dir>_archived_<time>``) instead of
    refusing it. The folder's lock (rank 0) is held from here until :meth:`fit` ends or :meth:`release`.
    """

    def __init__(self, cfg: dict, resume: bool = False, clock=time.perf_counter, archive: bool = False) -> None:
        cfg = upgrade_keys(cfg, "the config")
        check_values(cfg, "the config")
        self.cfg, self.clock = cfg, clock
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
        self.archived: Path | None = None  # where an earlier run in out_dir was moved (archive=True)
        self.lock: RunLock | None = None
        created = not self.out.exists()
        if self.main:
            self.lock = RunLock(self.out).acquire()
        try:
            self._setup(cfg, resume, archive)
        except BaseException:
            self.release()
            if created and self.main and self.archived is None:
                try:
                    self.out.rmdir()  # the empty folder this failed start created
                except OSError:
                    pass
            raise

    def _setup(self, cfg: dict, resume: bool, archive: bool) -> None:
        """The rest of ``__init__``, run while holding the lock of ``out_dir``."""
        tc = cfg["train"]
        use_cuda = self.device.type == "cuda"
        if resume and not self.ckpt_path.is_file():
            raise FileNotFoundError(f"srops.models.train: --resume given but checkpoint "
                                    f"{str(self.ckpt_path)!r} does not exist")
        if self.main:
            found = [] if resume else earlier_run(self.out)
            if found and not archive:
                raise refuse_earlier_run(self.out, found)
            if found:
                assert self.lock is not None  # the main rank holds the lock
                self.lock.release()
                self.archived = archive_run(self.out)
                self.lock = RunLock(self.out).acquire()
                (self.archived / self.lock.path.name).unlink(missing_ok=True)
                print(f"srops.models.train: the earlier run in {str(self.out)!r} was moved to "
                      f"{str(self.archived)!r}", file=sys.stderr, flush=True)
            clean_stale_temporaries(self.out)
        seed = int(tc["seed"])
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        m = dict(cfg["model"])
        import_modules(m.pop("imports", None))
        check_keys(cfg, "the config")  # the network blocks too, now that their modules are imported
        self.scale = int(m.pop("scale"))
        name = m.pop("name")
        self.net = build_network(name, self.scale, m).to(self.device)
        check_threads(tc.get("threads"))
        self.thread_tuner: ThreadTuner | None = None  # a ThreadTuner while fit runs with train.threads: auto
        self.channels_last = bool(tc.get("channels_last"))
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        io_range = model_rgb_range(name, m)
        dc, vc = cfg["data"], cfg["val"]
        self.patches = TrainPatches(_folders(dc["train"]), self.scale, int(dc["lr_patch"]), bool(dc["augment"]),
                                    seed=seed, cache_dir=dc.get("cache_dir"), skip_small=bool(dc.get("skip_small")))
        val_folders = vc.get("folders") or dc.get("val")
        self.val = ValImages(_folders(val_folders), self.scale, cache_dir=dc.get("cache_dir"),
                             max_images=vc.get("max_images"), crop_border=vc.get("crop_border")) \
            if val_folders else None
        ipe = int(dc["iters_per_epoch"])
        if tc.get("iters") is None and tc.get("epochs") is None:
            raise ValueError("srops.models.train: give 'train.iters' or 'train.epochs', got neither")
        self.total = int(tc["iters"]) if tc.get("iters") is not None else int(tc["epochs"]) * ipe
        self.opt, self.sched = make_optim(self.net.parameters(), cfg["optim"], cfg["schedule"], ipe, self.total)
        amp = tc.get("amp")
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")
        self.loss = ContentLoss(cfg["loss"], self.device)
        self.gan = GanObjective(cfg["gan"], self.scale, self.device, ipe, self.total) if cfg.get("gan") else None
        self.ema = ModelEMA(self.net, float(tc["ema_decay"])) if tc.get("ema_decay") else None
        self.eval_model = NetIO(self.ema.module if self.ema else self.net, io_range)
        train_model = NetIO(self.net, io_range, pyramid=bool(tc.get("pyramid", False)))
        self.model: nn.Module = train_model
        if self.world > 1:
            ids = [self.device.index] if use_cuda else None
            self.model = nn.parallel.DistributedDataParallel(train_model, device_ids=ids)
            if self.gan is not None:
                self.gan.wrap_ddp(ids)
        self.iteration = 0
        self.decays_done = 0  # progress_milestones already applied
        self.best_psnr = -math.inf
        self.elapsed = 0.0  # training seconds of earlier sessions (from the checkpoint)
        self.resumed_from: int | None = None
        self._t0: float | None = None  # clock() at the start of this session's fit
        self.notes = [n for n in (self.patches.skip_summary(), self.loss.description) if n]
        self.validated: int | None = None  # the iteration of the last validation that ran
        self.val_pending = False  # a validation is due at self.iteration and has not run yet
        if resume:
            self._load(self.ckpt_path)

    def release(self) -> None:
        """Give up the lock of ``out_dir`` (idempotent; :meth:`fit` does it when it ends)."""
        if self.lock is not None:
            self.lock.release()

    def _restore_validation(self, record) -> None:
        """The checkpoint's ``validation`` entry (absent in older checkpoints: nothing pending)."""
        record = record if isinstance(record, dict) else {}
        last = record.get("last")
        self.validated = int(last) if isinstance(last, int) else None
        self.val_pending = bool(record.get("pending")) and self.validated != self.iteration

    # ---- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict:
        st = {"iteration": self.iteration, "config": self.cfg, "model": self.net.state_dict(),
              "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
              "scaler": self.scaler.state_dict(), "rng": rng_state(),
              "sampler": {"next_step": self.iteration, "seed": self.patches.seed}, "best_psnr": self.best_psnr,
              "decays_done": self.decays_done, "elapsed": self.seconds()}
        if self.gan is not None:
            st["gan"] = self.gan.state_dict()
        if self.ema is not None:
            st["ema"] = self.ema.state_dict()
        return st

    def _load(self, path: Path) -> None:
        """Resume from ``path`` (``last.pt``), read with ``torch.load(weights_only=True)`` only.

        A ``best.pt`` in ``out_dir`` supplies the best PSNR so far (a validation after the checkpoint may
        have written a better one). A ``best.pt`` that cannot be read safely, is truncated or holds no
        ``psnr`` stops the resume with a CheckpointError naming it, rather than being ignored: ignored, it
        would be overwritten by the next validation whatever its score, and it may be the user's best
        network. The message says how to convert it (if trusted) or to move it away.
        """
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
        if self.ema is not None:  # a run that turns the EMA on at a resume starts it from the weights
            ck.load_weights(self.ema.module, st.get("ema", st["model"]), path, "the EMA of this config's network",
                            who)
        set_rng_state(st["rng"])
        self.iteration = self.resumed_from = int(st["sampler"]["next_step"])
        self.best_psnr = float(st.get("best_psnr", -math.inf))
        self.decays_done = int(st.get("decays_done", 0))
        self.elapsed = float(st.get("elapsed", 0.0))
        self._restore_validation(st.get("validation"))
        best = self.out / "best.pt"
        if best.is_file():  # a validation after the checkpoint may have written a better best.pt
            self.best_psnr = max(self.best_psnr, self._best_psnr(best, who))

    @staticmethod
    def _best_psnr(best: Path, who: str) -> float:
        """The ``psnr`` entry of ``best``; CheckpointError naming the file (and the way out) otherwise."""
        from srops.models import checkpoint as ck

        keep = (f"; it would be overwritten by this run's next validation, so resume stops here: move "
                f"'{best}' out of the run folder to keep it aside")
        try:
            blob = ck.load_checkpoint(best, who=who)
        except ck.CheckpointError as exc:
            raise type(exc)(f"{exc}{keep}") from exc
        psnr = blob.get("psnr")
        if isinstance(psnr, bool) or not isinstance(psnr, (int, float)) or math.isnan(psnr):
            raise ck.CheckpointError(f"{who}: checkpoint '{best}' holds no PSNR (its 'psnr' entry is "
                                     f"{psnr!r}){keep}")
        return float(psnr)

    def save(self) -> None:
        if self.main:
            for p in self.net.parameters():
                if not torch.isfinite(p).all():
                    raise NonFiniteLossError("srops.models.train: parameters are not finite; "
                                             "checkpoint not written")
            st = self.state()
            st["validation"] = {"last": self.validated, "pending": self.val_pending}
            save_atomic(st, self.ckpt_path)
        if self.world > 1:
            dist.barrier()

    def seconds(self) -> float:
        """Training time so far, earlier sessions included."""
        return self.elapsed + (0.0 if self._t0 is None else self.clock() - self._t0)

    # ---- one step ------------------------------------------------------------------------------
    def step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        self.net.train()
        lr, hr = lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True)
        if self.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                  enabled=self.amp_dtype is not None)
        logs: dict[str, float] = {}
        if self.gan is not None:
            with autocast:
                sr = self.model(lr)
            logs["d_loss"] = self.gan.discriminator_step(sr, hr, autocast, self.scaler)
        with autocast:
            sr = self.model(lr) if self.gan is None else sr
            loss = self.loss(sr, hr)
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
        if self.ema is not None:
            self.ema.update(self.net)
        logs["loss"] = value
        return logs

    def validate(self) -> dict[str, float]:
        from srops.models.evaluation import evaluate

        if self.val is None:
            return {}
        crop = self.cfg["val"].get("crop_border")
        res = evaluate(self.eval_model, self.val, self.scale, self.device,
                       crop_border=self.scale if crop is None else int(crop))
        return {"psnr": res["psnr"], "ssim": res["ssim"]}

    # ---- loop ----------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``total`` (or the budget, or a stop signal): :func:`srops.models.loop.fit`."""
        return _fit_loop(self)


def run(cfg: dict, resume: bool = False, archive: bool = False) -> tuple[Trainer, dict]:
    """Build a :class:`Trainer` from ``cfg`` and train; returns it and the last validation result.

    ``archive``: move an earlier run in ``train.out_dir`` aside (see :class:`Trainer`) instead of refusing."""
    trainer = Trainer(cfg, resume=resume, archive=archive)
    try:
        return trainer, trainer.fit()
    finally:
        trainer.release()
