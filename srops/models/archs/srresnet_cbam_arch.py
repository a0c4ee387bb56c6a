"""SRResNet with CBAM at the end of every residual block (the CBAM study's SRGAN generator, docs/models.md §4)."""
from __future__ import annotations

from srops.models.archs.common import BackendArg
from srops.models.archs.srresnet_arch import SRResNet
from srops.models.registry import register


@register("srresnet_cbam")
class SRResNetCBAM(SRResNet):
    """SRResNet + CBAM: the CBAM study's "SRGAN + attention" generator.

    Model card
    ----------
    Paper [P]: the SRGAN generator (B = 16, BN) with CBAM in each residual block; a batch
    normalisation layer is added to CBAM's channel MLP. Trained as a GAN with a VGG54
    content loss (VGG19 block5_conv4 / 12.75, MSE) + 1e-3 · BCE adversarial loss.

    Our choices [C]: the CBAM sits at the end of each block, after the second BN and
    before the add (official CBAM-ResNet placement); ``CBAM(64, 16, mlp_bn=True)``
    (688 params: BN after the hidden layer as in the authors' BAM; r = 16, the CBAM
    default, where the authors' code used 8). The rest is :class:`SRResNet`.

    Note: the authors' Keras attention layers build nothing (``build``/``call`` nested in
    ``__init__``), so their "+att" counts equal the baseline (1.55M).

    Layout: ``[B, 3, H, W]`` in [0, 1] → ``[B, 3, sH, sW]``.

    Parameters: ×2 1,412,757, ×4 1,560,470 (baseline + 16 × 688).
    """

    def __init__(
        self,
        scale: int = 4,
        n_blocks: int = 16,
        n_feats: int = 64,
        prelu_per_channel: bool = False,
        output: str = "tanh01",
        cbam_reduction: int = 16,
        cbam_mlp_bn: bool = True,
        backend: BackendArg = None,
    ) -> None:
        super().__init__(
            scale=scale, n_blocks=n_blocks, n_feats=n_feats, prelu_per_channel=prelu_per_channel,
            output=output, cbam=True, cbam_reduction=cbam_reduction, cbam_mlp_bn=cbam_mlp_bn,
            backend=backend
        )
