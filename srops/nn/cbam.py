"""ChannelAttention, SpatialAttention and CBAM (docs/ops.md §C: official, timm, RCAN, CBAM study)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from srops.ops.cbam.frontend import POOL_TYPES, cbam, channel_attention, check_pool, spatial_attention


class ChannelAttention(nn.Module):
    """x · σ(Σ_p mlp(pool_p(x))), pools over H·W.

    Args:
        channels: C of the input ``[B, C, H, W]``.
        reduction: hidden width ``max(1, C // reduction)`` (CBAM, RCAN: 16).
        pool: ``("avg", "max")`` (CBAM) or ``("avg",)`` (RCAN channel attention).
        mlp_bn: BatchNorm1d after the hidden layer (the CBAM study's variant, docs/models.md §4; needs B > 1 in training).
        backend: see :func:`srops.functional.channel_attention`.

    The MLP is ``Linear(C, h) [→ BatchNorm1d(h)] → ReLU → Linear(h, C)``, with biases.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: Sequence[str] = POOL_TYPES,
        mlp_bn: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"srops.ChannelAttention: 'channels' must be an int >= 1, got {channels!r}")
        self.channels, self.pool, self.backend = channels, check_pool("ChannelAttention", pool), backend
        hidden = max(1, channels // reduction)
        layers: list[nn.Module] = [nn.Linear(channels, hidden)]
        if mlp_bn:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, channels)]
        self.mlp = nn.Sequential(*layers)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pool={self.pool}, backend={self.backend!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("ChannelAttention", x, self.channels)
        return channel_attention(x, self.mlp, self.pool, backend=self.backend)


class SpatialAttention(nn.Module):
    """x · σ(bn(conv(cat[max_c x, mean_c x]))).

    Args:
        kernel_size: odd size of the 2→1 convolution (7), padded to keep H×W.
        bn: BatchNorm2d(1) after the conv (official CBAM: eps 1e-5, momentum 0.01).
        bias: conv bias (official CBAM: none; DRFN's SAM: bias, no BN).
        backend: see :func:`srops.functional.spatial_attention`.
    """

    def __init__(self, kernel_size: int = 7, bn: bool = True, bias: bool = False, backend: str | None = None) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"srops.SpatialAttention: 'kernel_size' must be an odd int >= 1, got {kernel_size!r}")
        self.backend = backend
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if bn else None

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, 2, H, W]`` pooled map → ``[B, 1, H, W]`` gate logits."""
        z = self.conv(pooled)
        return self.bn(z) if self.bn is not None else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"srops.SpatialAttention: input must be [B, C, H, W], got shape {tuple(x.shape)}")
        return spatial_attention(x, self.logits, backend=self.backend)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate.

    Args:
        channels, reduction, pool, mlp_bn: as :class:`ChannelAttention`.
        kernel_size, spatial_bn, spatial_bias: as :class:`SpatialAttention` (``bn``, ``bias``).
        backend: see :func:`srops.functional.cbam`.

    Defaults are the official CBAM (avg+max, r = 16, 7×7 conv without bias, BN).
    Parameters at C = 64: 680; with ``mlp_bn=True`` (CBAM study) 688.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        kernel_size: int = 7,
        pool: Sequence[str] = POOL_TYPES,
        mlp_bn: bool = False,
        spatial_bn: bool = True,
        spatial_bias: bool = False,
        backend: str | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.channel = ChannelAttention(channels, reduction, pool, mlp_bn, backend)
        self.spatial = SpatialAttention(kernel_size, spatial_bn, spatial_bias, backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("CBAM", x, self.channel.channels)
        return cbam(x, self.channel.mlp, self.spatial.logits, self.channel.pool, backend=self.backend)


def _check_channels(name: str, x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"srops.{name}: input must be [B, {channels}, H, W], got {shape}")
