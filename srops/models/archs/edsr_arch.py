"""EDSR-baseline (Lim et al. 2017), optionally with CBAM in every residual block (CBAM study, docs/models.md §4)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from srops.models.archs.common import (
    BackendArg,
    MeanShift,
    Upsampler,
    check_positive,
    check_scale,
    conv,
    make_cbam,
)
from srops.models.registry import register


class EDSRBlock(nn.Module):
    """x + res_scale · [CBAM](conv3(ReLU(conv3(x)))); ``per_conv`` puts a CBAM after each conv instead."""

    def __init__(self, channels: int, res_scale: float, cbams: Sequence[nn.Module], per_conv: bool = False) -> None:
        super().__init__()
        if per_conv:
            layers = [conv(channels, channels, 3), cbams[0], nn.ReLU(), conv(channels, channels, 3), cbams[1]]
        else:
            layers = [conv(channels, channels, 3), nn.ReLU(), conv(channels, channels, 3), *cbams]
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


@register("edsr")
class EDSR(nn.Module):
    """EDSR-baseline (Lim et al. 2017; EDSR-PyTorch), the CBAM study's EDSR (docs/models.md §4).

    Model card
    ----------
    Code [R EDSR]: MeanShift → conv3 3→64 → 16 × [conv3 → ReLU → conv3, × res_scale, + x]
    → conv3, + head skip → Up(s) → conv3 64→3 → MeanShift; ``rgb_range`` = 255, res_scale 1.
    The CBAM study trains it with L1 on DIV2K ×4 (HR 96²).

    Our choices [C]: ``cbam=True`` (see ``edsr_cbam``) puts ``CBAM(64, 16, mlp_bn=True)``
    at the end of each block, before the scaling and the add (official CBAM-ResNet
    placement); ``cbam_per_conv=True`` instead puts one after each conv, as the CBAM study's
    authors' code did.

    Layout: ``[B, 3, H, W]`` RGB on 0..rgb_range → ``[B, 3, sH, sW]``.

    Parameters: ×2 1,369,859, ×3 1,554,499, ×4 1,517,571.
    """

    def __init__(
        self,
        scale: int = 4,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        cbam: bool = False,
        cbam_per_conv: bool = False,
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__()
        name = "edsr_cbam" if cbam else "edsr"
        self.scale = check_scale(name, scale)
        check_positive(name, n_resblocks=n_resblocks, n_feats=n_feats)
        c = n_feats
        n_cbam = (2 if cbam_per_conv else 1) if cbam else 0

        def make_block() -> EDSRBlock:
            cbams = [make_cbam(c, cbam_reduction, cbam_mlp_bn, backend) for _ in range(n_cbam)]
            return EDSRBlock(c, res_scale, cbams, per_conv=cbam and cbam_per_conv)

        self.sub_mean = MeanShift(rgb_range, sign=-1)
        self.head = conv(3, c, 3)
        self.body = nn.Sequential(*[make_block() for _ in range(n_resblocks)], conv(c, c, 3))
        self.upsample = Upsampler(scale, c)
        self.recon = conv(c, 3, 3)
        self.add_mean = MeanShift(rgb_range, sign=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(self.sub_mean(x))
        return self.add_mean(self.recon(self.upsample(self.body(h) + h)))
