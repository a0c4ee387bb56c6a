"""SRResNet (SRGAN generator, Ledig et al. 2017 / leftthomas) and the skeleton its variants share."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from srops.models.archs.common import (
    BackendArg,
    Upsampler,
    check_choice,
    check_positive,
    check_scale,
    conv,
    make_cbam,
)
from srops.models.registry import register

OUTPUTS = ("tanh01", "tanh", "none")


def norm_layer(kind: str, channels: int, groups: int = 32) -> nn.Module:
    """``"bn"`` BatchNorm2d, ``"gn"`` GroupNorm(groups), ``"none"`` identity."""
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class SRResBlock(nn.Module):
    """x + [attn](norm(conv3(PReLU(norm(conv3(x)))))): SRResNet's block; ``attn`` (e.g. CBAM) before the add."""

    def __init__(self, channels: int, prelu_params: int, norm: str = "bn", attn: nn.Module | None = None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3),
            norm_layer(norm, channels),
            nn.PReLU(prelu_params),
            conv(channels, channels, 3),
            norm_layer(norm, channels),
        )
        self.attn = attn if attn is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.body(x))


class SRResNetSkeleton(nn.Module):
    """conv9 + PReLU → blocks → conv3 + norm, + skip → Up(s) with PReLU → conv9 → output map.

    Input ``[B, 3, H, W]`` in [0, 1]; output ``[B, 3, sH, sW]``: (tanh + 1)/2 in [0, 1]
    (``"tanh01"``, leftthomas), tanh in [−1, 1] (``"tanh"``, Ledig) or linear (``"none"``).
    """

    def __init__(
        self,
        model: str,
        scale: int,
        n_blocks: int,
        n_feats: int,
        prelu_per_channel: bool,
        post_norm: str,
        output: str,
        make_block: Callable[[int], nn.Module],
    ) -> None:
        super().__init__()
        self.scale = check_scale(model, scale)
        check_positive(model, n_blocks=n_blocks, n_feats=n_feats)
        check_choice(model, "output", output, OUTPUTS)
        c, p = n_feats, (n_feats if prelu_per_channel else 1)
        self.output = output
        self.head = nn.Sequential(conv(3, c, 9), nn.PReLU(p))
        self.blocks = nn.Sequential(*[make_block(p) for _ in range(n_blocks)])
        self.body_tail = nn.Sequential(conv(c, c, 3), norm_layer(post_norm, c))
        self.upsample = Upsampler(scale, c, act=lambda: nn.PReLU(p))
        self.recon = conv(c, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.head(x)
        y = self.recon(self.upsample(self.body_tail(self.blocks(f1)) + f1))
        if self.output == "tanh01":
            return (torch.tanh(y) + 1) / 2
        return torch.tanh(y) if self.output == "tanh" else y


@register("srresnet")
class SRResNet(SRResNetSkeleton):
    """SRResNet: the SRGAN generator (Ledig et al. 2017; leftthomas/SRGAN code).

    Model card
    ----------
    Paper/code [R]: conv9 3→64 + PReLU → B residual blocks (conv3-BN-PReLU-conv3-BN, +x)
    → conv3 + BN, + head skip → ×2 stages of conv3 64→256, PixelShuffle(2), PReLU →
    conv9 64→3. Ledig uses B = 16 and tanh output in [−1, 1]; leftthomas uses B = 5 and
    (tanh + 1)/2 in [0, 1].

    Our choices [C]: B = ``n_blocks`` = 16 (Ledig; the CBAM study's SRGAN); output
    ``"tanh01"``; one shared PReLU parameter (PyTorch default; ``prelu_per_channel``
    gives Keras' per-channel PReLU); ×3 = one conv3 64→576, PixelShuffle(3), PReLU.
    ``cbam=True`` adds a CBAM at the end of every block (see ``srresnet_cbam``).

    Layout: ``[B, 3, H, W]`` in [0, 1] → ``[B, 3, sH, sW]``.

    Parameters: B = 16: ×2 1,401,749, ×4 1,549,462 (per-channel PReLU 1,550,659);
    B = 5: ×2 586,506, ×4 734,219.
    """

    def __init__(
        self,
        scale: int = 4,
        n_blocks: int = 16,
        n_feats: int = 64,
        prelu_per_channel: bool = False,
        output: str = "tanh01",
        cbam: bool = False,
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        use_cbam = cbam

        def make_block(p: int) -> nn.Module:
            attn = make_cbam(n_feats, cbam_reduction, cbam_mlp_bn, backend) if use_cbam else None
            return SRResBlock(n_feats, p, "bn", attn)

        name = "srresnet_cbam" if cbam else "srresnet"
        super().__init__(name, scale, n_blocks, n_feats, prelu_per_channel, "bn", output, make_block)

