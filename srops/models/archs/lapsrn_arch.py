"""LapSRN (Lai et al. 2017; twtygqyy/pytorch-LapSRN), the CBAM study's RGB variant, optionally with CBAM.

docs/models.md §4.
"""
from __future__ import annotations

import torch
from torch import nn

from srops.models.archs.common import BackendArg, check_positive, check_scale, conv, make_cbam
from srops.models.registry import register


def bilinear_kernel(size: int) -> torch.Tensor:
    """``[size, size]`` bilinear interpolation filter for a stride ``(size + 1) // 2`` transposed conv."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = 1 - (og - centre).abs() / factor
    return (filt[:, None] * filt[None, :]).float()


class LapResUnit(nn.Module):
    """x + [CBAM](LReLU(conv3(LReLU(conv3(x))))), convs without bias."""

    def __init__(self, channels: int, attn: nn.Module | None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(channels, channels, 3, bias=False), nn.LeakyReLU(0.2),
            conv(channels, channels, 3, bias=False), nn.LeakyReLU(0.2),
            attn if attn is not None else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LapLevel(nn.Module):
    """One ×2 pyramid level: feature branch (residual units, convT ×2) and image branch (convT ×2 + residual)."""

    def __init__(self, channels: int, img_channels: int, units: list[nn.Module]) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *units, nn.ConvTranspose2d(channels, channels, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)
        )
        self.residual = conv(channels, img_channels, 3, bias=False)
        self.image = nn.ConvTranspose2d(img_channels, img_channels, 4, 2, 1, bias=False)
        with torch.no_grad():
            self.image.weight.zero_()
            for c in range(img_channels):
                self.image.weight[c, c] = bilinear_kernel(4)

    def forward(self, feats: torch.Tensor, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(feats)
        return feats, self.image(img) + self.residual(feats)


@register("lapsrn")
class LapSRN(nn.Module):
    """LapSRN: Laplacian pyramid SR network (Lai et al. 2017), the CBAM study's variant (docs/models.md §4).

    Model card
    ----------
    Paper [P, CBAM study; R twtygqyy]: conv3 3→64 + LReLU(0.2); per ×2 level a feature
    branch of 10 conv3 + LReLU then convT 4×4/2 64→64 + LReLU, a residual conv3 64→3,
    and an image branch convT 4×4/2 3→3 (bilinear init) added to the residual; convs
    without bias; 27 layers at ×4; Charbonnier loss (ε = 1e-3) summed over the pyramid
    outputs (training: ``loss: {name: charbonnier}`` with ``train.pyramid: true``, each level against HR
    downscaled by MATLAB bicubic; :func:`srops.models.objectives.content_loss`).

    Our choices [C]: the 10 convs form ``n_units`` = 5 residual units [conv3 → LReLU →
    conv3 → LReLU → (CBAM) → + x]; with ``cbam=True`` (see ``lapsrn_cbam``) each unit has
    ``CBAM(64, 16, mlp_bn=True)``. The image convT is initialised to a per-channel
    bilinear filter; the other layers keep PyTorch's default init. RGB in and out.
    ×3 is impossible (levels are ×2): a ValueError at construction.

    Layout: ``[B, 3, H, W]`` → ``[B, 3, sH, sW]``; :meth:`forward_pyramid` returns every
    level's output (×2, ×4).

    Parameters: ×2 437,776, ×4 873,824.
    """

    def __init__(
        self,
        scale: int = 4,
        n_feats: int = 64,
        n_units: int = 5,
        img_channels: int = 3,
        cbam: bool = False,
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__()
        name = "lapsrn_cbam" if cbam else "lapsrn"
        if scale == 3:
            raise ValueError(
                f"srops.models.{name}: 'scale' must be a power of two (2 or 4): LapSRN upsamples by ×2 per "
                f"pyramid level, got 3"
            )
        self.scale = check_scale(name, scale, (2, 4))
        check_positive(name, n_feats=n_feats, n_units=n_units, img_channels=img_channels)
        c = n_feats

        def unit() -> LapResUnit:
            return LapResUnit(c, make_cbam(c, cbam_reduction, cbam_mlp_bn, backend) if cbam else None)

        self.head = nn.Sequential(conv(img_channels, c, 3, bias=False), nn.LeakyReLU(0.2))
        self.levels = nn.ModuleList(
            LapLevel(c, img_channels, [unit() for _ in range(n_units)]) for _ in range(scale.bit_length() - 1)
        )

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every level, coarse to fine: ``[B, 3, 2H, 2W]``, ``[B, 3, 4H, 4W]``, …"""
        feats, img, outs = self.head(x), x, []
        for level in self.levels:
            feats, img = level(feats, img)
            outs.append(img)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pyramid(x)[-1]
