"""Scoring SR networks: the paper-style PSNR/SSIM of a network over benchmark images (engine of
``python -m srops.models.test``, the trainer's validation, the demo and the reproduction recipe).

Protocol: SR output quantised to 8 bits (MATLAB's uint8 rule), PSNR/SSIM on the BT.601 Y channel with
``scale`` pixels shaved from each border. Optional ×8 geometric self-ensemble
(:data:`srops.models.inference.ENSEMBLE`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from srops.image import quantize, save_image
from srops.models.inference import ensemble_mean, final_output
from srops.models.registry import build

__all__ = ["evaluate", "format_table", "load_model", "quantize", "save_png", "score", "super_resolve"]


@torch.no_grad()
def super_resolve(model: nn.Module, lr: torch.Tensor, self_ensemble: bool = False) -> torch.Tensor:
    """SR of LR ``[B, 3, h, w]`` in [0, 1] → ``[B, 3, sh, sw]`` (unquantised); ×8 geometric ensemble optional."""
    model.eval()
    return ensemble_mean(lambda x: final_output(model(x)).float(), lr, self_ensemble)


def score(sr: torch.Tensor, hr: torch.Tensor, crop_border: int) -> tuple[float, float]:
    """(PSNR, SSIM) of quantised ``sr`` vs ``hr`` (``[1, 3, H, W]`` in [0, 1]) on Y, shaving ``crop_border``."""
    from srops.image import psnr, ssim

    sr = quantize(sr)
    return (float(psnr(sr, hr, crop_border, test_y_channel=True)[0]),
            float(ssim(sr, hr, crop_border, test_y_channel=True)[0]))


def evaluate(model: nn.Module, images: Iterable, scale: int, device: torch.device | str = "cpu",
             crop_border: int | None = None, self_ensemble: bool = False,
             save_dir: Path | None = None, progress: bool = False, desc: str = "") -> dict:
    """Mean PSNR/SSIM of ``model`` over ``(name, lr, hr)`` items; optionally saves SR PNGs to ``save_dir``."""
    from tqdm import tqdm

    crop = scale if crop_border is None else crop_border
    device = torch.device(device)
    was_training = model.training
    per: list[tuple[str, float, float]] = []
    try:
        for name, lr, hr in tqdm(images, desc=desc, disable=not progress, file=sys.stderr, leave=False):
            try:
                sr = super_resolve(model, lr.to(device), self_ensemble).cpu()
            except ValueError as exc:  # e.g. an image smaller than the network accepts
                raise ValueError(_refusal(model, name, lr.to(device), exc)) from exc
            if sr.shape != hr.shape:
                raise ValueError(f"srops.models.test: model output {tuple(sr.shape)} does not match HR "
                                 f"{tuple(hr.shape)} for image {name!r}")
            p, s = score(sr, hr, crop)
            per.append((name, p, s))
            if save_dir is not None:
                save_png(sr[0], Path(save_dir) / f"{name}.png")
    finally:
        model.train(was_training)
    return {"psnr": float(np.mean([p for _, p, _ in per])), "ssim": float(np.mean([s for _, _, s in per])),
            "per_image": per}


def _refusal(model: nn.Module, name: str, lr: torch.Tensor, exc: ValueError) -> str:
    """Why the network refused image ``name``: below its smallest accepted size (probed), or its own error."""
    from srops.models.inference import smallest_input

    h, w = lr.shape[-2:]
    n = smallest_input(model, lr.device, lr.dtype)
    if n is not None and min(h, w) < n:
        return (f"srops.models.test: image {name!r} is {w}x{h} pixels at LR; the network accepts at least "
                f"{n}x{n} ({exc})")
    return f"srops.models.test: the network cannot super-resolve image {name!r} ({w}x{h} LR pixels): {exc}"


def save_png(img: torch.Tensor, path: Path) -> None:
    """Save ``[3, H, W]`` float in [0, 1] as an 8-bit PNG, atomically, creating its folder
    (:func:`srops.image.save_image`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(img, path)


def load_model(name: str, scale: int, checkpoint: str | None, device: torch.device) -> nn.Module:
    """Build ``name`` at ``scale``; with a checkpoint, use its stored model config and weights.

    FileNotFoundError / ValueError (``srops.models.checkpoint.CheckpointError``) naming the file when the
    checkpoint is missing, unreadable, of another network or scale, or of another width than its config.
    """
    from srops.models.checkpoint import (
        CheckpointError,
        build_network,
        load_checkpoint,
        load_weights,
        model_spec,
        state_dict_of,
    )
    from srops.models.objectives import NetIO, model_rgb_range

    who = "srops.models.test"
    kwargs: dict = {}
    state = None
    model = None
    if checkpoint is not None:
        blob = load_checkpoint(checkpoint, who=who)
        state = state_dict_of(blob, checkpoint, who)
        if "config" in blob:
            spec = model_spec(blob, checkpoint, who)
            if spec.name != name:
                raise CheckpointError(f"{who}: checkpoint '{checkpoint}' holds a {spec.name!r} network, not {name!r}")
            if spec.scale != scale:
                raise CheckpointError(f"{who}: checkpoint '{checkpoint}' is for ×{spec.scale}, not ×{scale}")
            kwargs = spec.kwargs
            model = build_network(spec, checkpoint, who)  # the stored arguments: errors name the file
    if model is None:
        model = build(name, scale=scale)
    if state is not None and checkpoint is not None:  # state comes from the checkpoint
        load_weights(model, state, checkpoint, f"network {name!r} ×{scale}", who)
    return NetIO(model, model_rgb_range(name, kwargs)).to(device).eval()


def format_table(rows: Sequence[tuple[str, Sequence[tuple[float, float] | None]]], datasets: list[str],
                 scale: int) -> str:
    """A markdown PSNR/SSIM table; a ``None`` cell prints as ``n/a``."""
    head = f"| model (×{scale}) | " + " | ".join(datasets) + " |"
    sep = "|---|" + "---|" * len(datasets)
    body = [f"| {m} | " + " | ".join("n/a" if c is None else f"{c[0]:.2f}/{c[1]:.4f}" for c in cells) + " |"
            for m, cells in rows]
    return "\n".join([head, sep, *body])
