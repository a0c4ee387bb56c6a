"""A tiny SR network for fast training tests, registered as ``tiny_sr`` (imported via ``model.imports``)."""
from __future__ import annotations

import torch
from torch import nn

from srops.models import list_models, register


class TinySR(nn.Module):
    """conv3 3→8, ReLU, conv3 8→3s², PixelShuffle(s), plus nearest-upsampled input: ``[B,3,h,w]`` → ``[B,3,sh,sw]``."""

    def __init__(self, scale: int = 2, feats: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(3, feats, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(feats, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x.repeat_interleave(self.scale, -2).repeat_interleave(self.scale, -1)


if "tiny_sr" not in list_models():
    register("tiny_sr")(TinySR)
