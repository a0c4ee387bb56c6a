"""The attention SRGAN generator (Wu; docs/models.md §3): GroupNorm residual blocks with RCAN channel attention."""
from __future__ import annotations

import torch
from torch import nn

import srops
from srops.models.archs.common import BackendArg, conv, resolve_backend
from srops.models.archs.srresnet_arch import SRResNetSkeleton, norm_layer
from srops.models.registry import register


class AttentionResBlock(nn.Module):
    """x + CA(GN(conv3(PReLU(GN(conv3(PReLU(GN(conv3(x))))))))), CA = RCAN channel attention."""

    def __init__(self, channels: int, prelu_params: int, gn_groups: int, ca: nn.Module) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [conv(channels, channels, 3), norm_layer("gn", channels, gn_groups)]
            if i < 2:
                layers.append(nn.PReLU(prelu_params))
        self.body = nn.Sequential(*layers)
        self.ca = ca

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ca(self.body(x))


@register("srgan_attention")
class SRGANAttention(SRResNetSkeleton):
    """Attention SRGAN generator (Wu): SRResNet without BN, GroupNorm + RCAN channel attention blocks.

    Model card
    ----------
    Paper [P]: BN is removed and GroupNorm used instead (attributed to ESRGAN, which has
    no GN); residual blocks gain RCAN's channel attention; loss L1 + 0.001 · mean(1 − D(SR))
    (see :mod:`srops.models.losses`); ×4, HR crops 128², DIV2K, 100 epochs. The code base
    is leftthomas/SRGAN (loss, logging and iteration count match it).

    Our choices [C]: block = conv3-GN-PReLU-conv3-GN-PReLU-conv3-GN-CA, + x; CA =
    ``ChannelAttention(64, 16, pool=("avg",))`` (avgpool → 64→4 → ReLU → 4→64 → sigmoid,
    580 params); GN with ``gn_groups`` = 32 (Wu & He default); the post-body BN becomes
    GN; B = ``n_blocks`` = 5 (leftthomas; 16 is Ledig's); output (tanh + 1)/2; the rest as
    :class:`~srops.models.archs.srresnet_arch.SRResNet`.

    Layout: ``[B, 3, H, W]`` in [0, 1] → ``[B, 3, sH, sW]``.

    Parameters: per block 111,750. B = 5: ×2 774,691, ×4 922,404; B = 16: ×2 2,003,941,
    ×4 2,151,654.
    """

    def __init__(
        self,
        scale: int = 4,
        n_blocks: int = 5,
        n_feats: int = 64,
        gn_groups: int = 32,
        ca_reduction: int = 16,
        prelu_per_channel: bool = False,
        output: str = "tanh01",
        backend: BackendArg = None,
    ) -> None:
        ca_backend = resolve_backend(backend, srops.ChannelAttention.OPS)

        def make_block(p: int) -> nn.Module:
            ca = srops.ChannelAttention(n_feats, ca_reduction, pool=("avg",), backend=ca_backend)
            return AttentionResBlock(n_feats, p, gn_groups, ca)

        super().__init__("srgan_attention", scale, n_blocks, n_feats, prelu_per_channel, "gn", output, make_block)
