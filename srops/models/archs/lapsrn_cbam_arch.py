"""LapSRN with CBAM in every residual unit (CBAM study, docs/models.md §4)."""
from __future__ import annotations

from srops.models.archs.common import BackendArg
from srops.models.archs.lapsrn_arch import LapSRN
from srops.models.registry import register


@register("lapsrn_cbam")
class LapSRNCBAM(LapSRN):
    """LapSRN + CBAM: the CBAM study's "LapSRN + attention".

    Model card
    ----------
    Paper [P]: LapSRN with CBAM in its residual blocks (BN in the channel MLP), 27 layers,
    Charbonnier loss.

    Our choices [C]: 5 residual units per level, each [conv3 → LReLU → conv3 → LReLU →
    ``CBAM(64, 16, mlp_bn=True)`` → + x] (688 params per CBAM). ×3 unsupported.

    Layout: ``[B, 3, H, W]`` → ``[B, 3, sH, sW]``.

    Parameters: ×2 441,216, ×4 880,704.
    """

    def __init__(
        self,
        scale: int = 4,
        n_feats: int = 64,
        n_units: int = 5,
        img_channels: int = 3,
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__(
            scale=scale, n_feats=n_feats, n_units=n_units, img_channels=img_channels, cbam=True,
            cbam_reduction=cbam_reduction, cbam_mlp_bn=cbam_mlp_bn, backend=backend
        )
