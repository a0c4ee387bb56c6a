"""Training objectives used by ``srops.models.train``: pixel losses (also over LapSRN-style pyramids)
and the attention-SRGAN GAN loop (docs/models.md §3) (discriminator step, then the generator's adversarial term).

Config blocks:

* ``loss: {name: l1 | mse | charbonnier | vgg | l1+vgg | ..., weights: {l1: 1.0, vgg: 0.006}, eps: 1e-3,
  vgg: {weights: <file>, arch: vgg19 | vgg16, n_layers, feature_scale, optional: false}}``:
  the terms joined by ``+`` are summed with their ``weights`` (default 1). ``vgg`` is
  :class:`srops.models.losses.VGGFeatureLoss` (its ImageNet weights from ``loss.vgg.weights`` or the
  ``SROPS_VGG_WEIGHTS`` variable); with ``optional: true`` a missing weights file drops the term, and the
  run says so. A list of outputs (``train.pyramid: true``: :class:`NetIO` runs ``net.forward_pyramid``,
  LapSRN) sums the loss of each level against MATLAB-bicubic-downscaled HR.
* ``gan: {discriminator: {name: srgan_discriminator, ...kwargs}, adv_weight: 1e-3,
  optim: {...Adam...}, schedule: {...}}``
"""
from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Protocol, cast

import torch
import torch.nn.functional as F
from torch import nn

from srops.models import build
from srops.models.inference import final_output  # noqa: F401  (also re-exported: it used to live here)


class _Pyramid(Protocol):
    """A network with LapSRN's ``forward_pyramid`` (coarse → fine outputs)."""

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]: ...


class NetIO(nn.Module):
    """Adapts a network to the project's [0, 1] data: ``net(x · rgb_range) / rgb_range``.

    EDSR-family networks (AMMS, DRFN, EDSR) work on 0..rgb_range (255 by default, as in their papers'
    code). ``pyramid=True`` calls ``net.forward_pyramid`` (LapSRN) and returns the list of levels.
    Holds no parameters of its own, so ``state_dict`` files of the bare network stay interchangeable.
    """

    def __init__(self, net: nn.Module, rgb_range: float = 1.0, pyramid: bool = False) -> None:
        super().__init__()
        self.net, self.rgb_range, self.pyramid = net, float(rgb_range), pyramid

    def forward(self, x: torch.Tensor):
        r = self.rgb_range
        run: Callable[[torch.Tensor], Any] = cast(_Pyramid, self.net).forward_pyramid if self.pyramid else self.net
        out = run(x * r if r != 1.0 else x)
        if r == 1.0:
            return out
        return [o / r for o in out] if isinstance(out, (list, tuple)) else out / r


def model_rgb_range(name: str, kwargs: dict) -> float:
    """The data range a registered network expects: its ``rgb_range`` argument (given or default), else 1."""
    import inspect

    from srops.models.registry import _REGISTRY

    if "rgb_range" in kwargs:
        return float(kwargs["rgb_range"])
    cls = _REGISTRY.get(name)
    if cls is None:
        return 1.0
    param = inspect.signature(cls.__init__).parameters.get("rgb_range")
    return 1.0 if param is None or param.default is inspect.Parameter.empty else float(param.default)


def _pixel_loss(name: str, sr: torch.Tensor, hr: torch.Tensor, eps: float) -> torch.Tensor:
    from srops.models.losses import charbonnier

    if name == "l1":
        return F.l1_loss(sr, hr)
    if name == "mse":
        return F.mse_loss(sr, hr)
    if name == "charbonnier":
        return charbonnier(sr, hr, eps)
    raise ValueError(f"srops.models.train: 'loss.name' must be 'l1', 'mse' or 'charbonnier', got {name!r}")


def _pyramid_target(hr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """HR ``[B, 3, H, W]`` bicubic-downscaled (MATLAB imresize) to ``size``; HR itself if equal."""
    if tuple(hr.shape[-2:]) == tuple(size):
        return hr
    from srops.image import imresize

    factor = size[0] / hr.shape[-2]
    return imresize(hr.float(), factor).to(hr.dtype)


def content_loss(cfg: dict, sr, hr: torch.Tensor) -> torch.Tensor:
    """Pixel loss of ``sr`` against ``hr``; a list/tuple ``sr`` (coarse → fine pyramid) sums the loss of
    every level against HR downscaled to that level's size."""
    name, eps = cfg.get("name", "l1"), float(cfg.get("eps", 1e-3))
    if isinstance(sr, (list, tuple)):
        return functools.reduce(operator.add, (_pixel_loss(name, o.float(), _pyramid_target(hr, o.shape[-2:]).float(),
                                                           eps) for o in sr))
    return _pixel_loss(name, sr.float(), hr.float(), eps)


PIXEL_LOSSES = ("l1", "mse", "charbonnier")
LOSS_NAMES = PIXEL_LOSSES + ("vgg",)


class ContentLoss(nn.Module):
    """The ``loss`` block as a module: Σ weight_t · term_t(sr, hr) over the ``+``-joined terms of
    ``loss.name``; ``sr`` ``[B, 3, H, W]`` in [0, 1] or a coarse → fine list (LapSRN pyramid).

    ``description`` says what is trained (and why an optional VGG term was dropped).
    """

    def __init__(self, cfg: dict, device: torch.device | str = "cpu") -> None:
        super().__init__()
        names = [n.strip() for n in str(cfg.get("name", "l1")).split("+")]
        for n in names:
            if n not in LOSS_NAMES:
                raise ValueError(f"srops.models.train: 'loss.name' terms must be among {', '.join(LOSS_NAMES)} "
                                 f"(joined by '+', e.g. 'l1+vgg'), got {n!r} in {cfg.get('name')!r}")
        weights = dict(cfg.get("weights") or {})
        for n in weights:
            if n not in names:
                raise ValueError(f"srops.models.train: 'loss.weights' has {n!r}, which is not a term of "
                                 f"loss.name={cfg.get('name')!r}")
        self.eps = float(cfg.get("eps", 1e-3))
        self.vgg: VGGFeatureLoss | None = None
        notes = []
        if "vgg" in names:
            from srops.models.losses import DEFAULT_LAYERS, VGGFeatureLoss

            vcfg = dict(cfg.get("vgg") or {})
            optional = bool(vcfg.pop("optional", False))
            try:
                self.vgg = VGGFeatureLoss(**vcfg).to(device)
                arch = vcfg.get("arch", "vgg19")
                notes.append(f"vgg = {arch} features[:{vcfg.get('n_layers') or DEFAULT_LAYERS[arch]}]")
            except (ValueError, FileNotFoundError) as exc:
                if not optional or len(names) == 1:
                    raise
                names.remove("vgg")
                why = "no weights file given" if "no weights file" in str(exc) else "its weights file is missing"
                notes.append(f"the optional VGG term is off: {why} (set SROPS_VGG_WEIGHTS or loss.vgg.weights "
                             f"to a torchvision {vcfg.get('arch', 'vgg19')} state_dict file to use it)")
        self.terms = [(n, float(weights.get(n, 1.0))) for n in names]
        self.description = "loss: " + " + ".join(n if w == 1.0 else f"{w:g}·{n}" for n, w in self.terms) + \
            ("; " + "; ".join(notes) if notes else "")

    def _one(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for name, weight in self.terms:
            if name == "vgg":
                assert self.vgg is not None  # a "vgg" term is kept only with its loss module
                term = self.vgg(sr.float(), hr.float())
            else:
                term = _pixel_loss(name, sr.float(), hr.float(), self.eps)
            total = weight * term if total is None else total + weight * term
        assert total is not None  # loss.name has at least one term
        return total

    def forward(self, sr, hr: torch.Tensor) -> torch.Tensor:
        if isinstance(sr, (list, tuple)):
            return functools.reduce(operator.add, (self._one(o, _pyramid_target(hr, o.shape[-2:])) for o in sr))
        return self._one(sr, hr)


class GanObjective:
    """Discriminator, its optimiser/scheduler and the attention-SRGAN losses (leftthomas/SRGAN form):

    ``d_loss = 1 - mean D(HR) + mean D(SR.detach())``; generator term ``adv_weight * mean(1 - D(SR))``.
    """

    def __init__(self, cfg: dict, scale: int, device: torch.device, iters_per_epoch: int,
                 total: int | None = None) -> None:
        from srops.models.schedules import make_optim

        dcfg = dict(cfg.get("discriminator") or {"name": "srgan_discriminator"})
        name = dcfg.pop("name")
        self.disc = build(name, scale=scale, **dcfg).to(device)
        self.d_model: nn.Module = self.disc
        self.adv_weight = float(cfg.get("adv_weight", 1e-3))
        optim = cfg.get("optim") or {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8}
        sched = cfg.get("schedule") or {"step_size": 10**12, "gamma": 1.0}
        self.opt, self.sched = make_optim(self.disc.parameters(), optim, sched, iters_per_epoch, total)

    def wrap_ddp(self, device_ids) -> None:
        """Wrap the discriminator in DDP for a multi-process run.

        Its buffers (BatchNorm running statistics) are not broadcast at every forward but once per step by
        :meth:`sync_buffers`: the D step runs two forwards, D(HR) then D(SR), before one backward, and
        with torch 2.11 the buffer broadcast that DDP does before the second forward makes that backward
        fail ("modified by an inplace operation"). Rank 0's buffers evolve as before (a
        broadcast never changes its source); the other ranks take rank 0's at the start of every D step.
        """
        self.d_model = nn.parallel.DistributedDataParallel(self.disc, device_ids=device_ids,
                                                           broadcast_buffers=False)

    def sync_buffers(self) -> None:
        """Copy rank 0's discriminator buffers to every rank (a no-op without DDP)."""
        if self.d_model is self.disc:
            return
        import torch.distributed as dist

        with torch.no_grad():
            for buf in self.disc.buffers():
                dist.broadcast(buf, src=0)

    def discriminator_step(self, sr, hr: torch.Tensor, autocast, scaler) -> float:
        self.disc.train()
        self.sync_buffers()
        sr = final_output(sr).detach()
        from srops.models.losses import SRGANDiscriminatorLoss

        with autocast:
            d_loss = SRGANDiscriminatorLoss()(self.d_model(hr).float(), self.d_model(sr).float())
        self.opt.zero_grad(set_to_none=True)
        scaler.scale(d_loss).backward()
        scaler.step(self.opt)
        return float(d_loss.detach())

    def generator_adversarial(self, sr) -> torch.Tensor:
        for p in self.disc.parameters():
            p.requires_grad_(False)
        try:
            term = self.adv_weight * (1 - self.disc(final_output(sr)).float()).mean()
        finally:
            for p in self.disc.parameters():
                p.requires_grad_(True)
        return term

    def sched_step(self) -> None:
        self.sched.step()

    def state_dict(self) -> dict:
        return {"model": self.disc.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.disc.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.sched.load_state_dict(st["scheduler"])
