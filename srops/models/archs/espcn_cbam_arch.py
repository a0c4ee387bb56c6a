"""ESPCN with CBAM after every conv (CBAM study, docs/models.md §4)."""
from __future__ import annotations

from srops.models.archs.common import BackendArg
from srops.models.archs.espcn_arch import ESPCN
from srops.models.registry import register


@register("espcn_cbam")
class ESPCNCBAM(ESPCN):
    """ESPCN + CBAM: the CBAM study's "ESPCN + attention".

    Model card
    ----------
    Paper [P]: conv5 3→64 → act → CBAM → conv3 64→32 → act → CBAM → conv3 32→3r² →
    CBAM → PixelShuffle(r); CBAM's channel MLP has a batch normalisation layer.

    Our choices [C]: ``CBAM(C, 16, mlp_bn=True)`` with hidden width max(1, C // 16)
    (688 at C = 64, 266 at 32, 445 at 48, 184 at 27, 139 at 12); ReLU.

    Layout: ``[B, 3, H, W]`` → ``[B, 3, rH, rW]``.

    Parameters: ×2 27,889, ×3 32,269, ×4 38,599.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: tuple[int, int] = (64, 32),
        act: str = "relu",
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__(
            scale=scale, channels=channels, act=act, cbam=True, cbam_reduction=cbam_reduction,
            cbam_mlp_bn=cbam_mlp_bn, backend=backend
        )
