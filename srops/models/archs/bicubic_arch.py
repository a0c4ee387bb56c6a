"""Bicubic upscaling baseline: MATLAB-exact ``imresize`` as a parameter-free network.

The reference row of every SR results table ("Bicubic"): the LR input is
upscaled by ``scale`` with :func:`srops.image.imresize` (cubic a = -0.5,
mirror borders). Used to check the evaluation protocol against the published
baselines and as a trivial model for pipeline smoke tests. An integer factor
takes imresize's per-phase path, which builds nothing from the input's size,
so the network exports (torch.export, ONNX) with dynamic height and width.
"""
from __future__ import annotations

import torch
from torch import nn

from srops.image import imresize
from srops.models.registry import register


@register("bicubic")
class Bicubic(nn.Module):
    """MATLAB bicubic upscaling by an integer factor; no parameters.

    Args:
        scale: integer upscaling factor >= 1 (default 4).

    Shapes: LR ``[B, C, h, w]`` (RGB in [0, 1]) -> SR ``[B, C, h * scale, w * scale]``,
    same dtype and device; the output is not clamped or quantised.
    """

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int):
            raise TypeError(f"srops.models.bicubic: 'scale' must be an int >= 1, got {type(scale).__name__} {scale!r}")
        if scale < 1:
            raise ValueError(f"srops.models.bicubic: 'scale' must be an int >= 1, got {scale}")
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"srops.models.bicubic: 'x' must be a 4-D tensor [B, C, h, w], got {shape}")
        return imresize(x, scale=self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
