"""EDSR-baseline with CBAM at the end of every residual block (CBAM study, docs/models.md §4)."""
from __future__ import annotations

from srops.models.archs.common import BackendArg
from srops.models.archs.edsr_arch import EDSR
from srops.models.registry import register


@register("edsr_cbam")
class EDSRCBAM(EDSR):
    """EDSR-baseline + CBAM: the CBAM study's "EDSR + attention".

    Model card
    ----------
    Paper [P]: CBAM "at the end of each residual block", with a batch normalisation layer
    added to the channel MLP; L1 on DIV2K ×4.

    Our choices [C]: ``CBAM(64, 16, mlp_bn=True)`` (688 params: BN after the hidden layer,
    as in the authors' BAM; r = 16, the CBAM default, where their code used 8) after the
    block's second conv, before the res_scale and the add. ``cbam_per_conv=True`` is the
    authors' code (one after each conv). The paper's 1.52M equals the baseline because its
    Keras attention layers build nothing.

    Layout: ``[B, 3, H, W]`` RGB on 0..rgb_range → ``[B, 3, sH, sW]``.

    Parameters: ×2 1,380,867, ×3 1,565,507, ×4 1,528,579 (baseline + 16 × 688).
    """

    def __init__(
        self,
        scale: int = 4,
        n_resblocks: int = 16,
        n_feats: int = 64,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        cbam_per_conv: bool = False,
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__(
            scale=scale, n_resblocks=n_resblocks, n_feats=n_feats, res_scale=res_scale, rgb_range=rgb_range,
            cbam=True, cbam_per_conv=cbam_per_conv, cbam_reduction=cbam_reduction, cbam_mlp_bn=cbam_mlp_bn,
            backend=backend
        )
