"""ESPCN (Shi et al. 2016), optionally with CBAM after every conv (CBAM study, docs/models.md §4)."""
from __future__ import annotations

import torch
from torch import nn

from srops.models.archs.common import BackendArg, check_choice, check_scale, conv, make_cbam
from srops.models.registry import register

ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@register("espcn")
class ESPCN(nn.Module):
    """ESPCN: efficient sub-pixel CNN (Shi et al. 2016), the CBAM study's RGB variant (docs/models.md §4).

    Model card
    ----------
    Paper [P, CBAM study]: conv5 3→64 → act → conv3 64→32 → act → conv3 32→3r² →
    PixelShuffle(r); RGB input, no skip connections; L1 on DIV2K ×4. Shi et al. use tanh;
    the CBAM study's code uses ReLU.

    Our choices [C]: ``act="relu"`` (the CBAM-study preset); ``channels=(64, 32)``. With
    ``cbam=True`` (see ``espcn_cbam``) a ``CBAM(C, 16, mlp_bn=True)`` follows each
    activation and the last conv (before the shuffle), hidden width max(1, C // 16).

    Layout: ``[B, 3, H, W]`` → ``[B, 3, rH, rW]``, no output activation.

    Parameters: ×2 26,796, ×3 31,131, ×4 37,200.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: tuple[int, int] = (64, 32),
        act: str = "relu",
        cbam: bool = False,
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__()
        name = "espcn_cbam" if cbam else "espcn"
        self.scale = check_scale(name, scale)
        check_choice(name, "act", act, tuple(ACTS))
        c1, c2 = channels
        out = 3 * scale * scale

        def att(c: int) -> list[nn.Module]:
            return [make_cbam(c, cbam_reduction, cbam_mlp_bn, backend)] if cbam else []

        self.body = nn.Sequential(
            conv(3, c1, 5), ACTS[act](), *att(c1),
            conv(c1, c2, 3), ACTS[act](), *att(c2),
            conv(c2, out, 3), *att(out),
            nn.PixelShuffle(scale),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
