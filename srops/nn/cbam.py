"""ChannelAttention, SpatialAttention and CBAM (docs/ops.md §C: official, timm, RCAN, CBAM study)."""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as TF
from torch import nn

from srops.nn._export import backend_for
from srops.nn.compat import CBAM_PEERS, CHANNEL, SPATIAL, PeerLayouts, from_state_dict, peer_load_hook
from srops.ops.cbam.frontend import POOL_TYPES, cbam, channel_attention, check_pool, spatial_attention

_POOL_ORDERS = (("max", "mean"), ("mean", "max"))


class ChannelAttention(nn.Module):
    """x · σ(Σ_p mlp(pool_p(x))), pools over H·W.

    Args:
        channels: C of the input ``[B, C, H, W]``.
        reduction: hidden width ``max(1, C // reduction)`` (CBAM, RCAN: 16).
        pool: ``("avg", "max")`` (CBAM) or ``("avg",)`` (RCAN channel attention).
        mlp_bn: BatchNorm1d after the hidden layer (the CBAM study's variant, docs/models.md §4; needs B > 1 in
            training).
        backend: see :func:`srops.functional.channel_attention`.
        mlp_bias: biases in the two Linear layers (official CBAM, RCAN: yes; timm: ``False``).
        hidden: the hidden width itself, overriding ``reduction`` (timm rounds C / 16 to the
            nearest integer, which no ``C // r`` may equal).

    The MLP is ``Linear(C, h) [→ BatchNorm1d(h)] → ReLU → Linear(h, C)``. ``load_state_dict``
    also takes the official CBAM, timm and RCAN keys (docs/ops.md §D; :func:`from_state_dict`).
    """

    #: The srops ops (``srops.backends()`` names) this module runs: what its ``backend`` argument selects for.
    OPS: ClassVar[tuple[str, ...]] = ("channel_attention",)
    PEER_LAYOUTS: ClassVar[PeerLayouts] = CHANNEL

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        pool: Sequence[str] = POOL_TYPES,
        mlp_bn: bool = False,
        backend: str | None = None,
        mlp_bias: bool = True,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"srops.ChannelAttention: 'channels' must be an int >= 1, got {channels!r}")
        if hidden is not None and (isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1):
            raise ValueError(f"srops.ChannelAttention: 'hidden' must be None or an int >= 1, got {hidden!r}")
        self.channels, self.pool, self.backend = channels, check_pool("ChannelAttention", pool), backend
        hidden = max(1, channels // reduction) if hidden is None else hidden
        layers: list[nn.Module] = [nn.Linear(channels, hidden, bias=mlp_bias)]
        if mlp_bn:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, channels, bias=mlp_bias)]
        self.mlp = nn.Sequential(*layers)
        self.register_load_state_dict_pre_hook(peer_load_hook)

    @classmethod
    def from_state_dict(cls, state_dict: dict, layout: str, **overrides) -> "ChannelAttention":
        """A module configured as the peer's (``"official"``, ``"timm"``, ``"rcan"``) holding its weights."""
        return from_state_dict(cls, state_dict, layout, **overrides)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, pool={self.pool}, backend={self.backend!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("ChannelAttention", x, self.channels)
        return channel_attention(x, self.mlp, self.pool, backend=backend_for(self.backend))


class SpatialAttention(nn.Module):
    """x · σ(bn(conv(cat[max_c x, mean_c x]))).

    Args:
        kernel_size: odd size of the 2→1 convolution (7), padded to keep H×W.
        bn: BatchNorm2d(1) after the conv (official CBAM: eps 1e-5, momentum 0.01).
        bias: conv bias (official CBAM: none; DRFN's SAM: bias, no BN).
        backend: see :func:`srops.functional.spatial_attention`.
        pool_order: which pooled map the conv's two input channels hold: ``("max", "mean")``
            (official CBAM) or ``("mean", "max")`` (timm). The kernels always pool
            [max, mean]; the other order uses the conv weight with its input channels swapped.
        bn_momentum: the BatchNorm's momentum (official CBAM 0.01, timm 0.1).

    ``load_state_dict`` also takes the official CBAM and timm keys (docs/ops.md §D).
    """

    #: The srops ops (``srops.backends()`` names) this module runs: what its ``backend`` argument selects for.
    OPS: ClassVar[tuple[str, ...]] = ("spatial_attention",)
    PEER_LAYOUTS: ClassVar[PeerLayouts] = SPATIAL

    def __init__(
        self,
        kernel_size: int = 7,
        bn: bool = True,
        bias: bool = False,
        backend: str | None = None,
        pool_order: Sequence[str] = ("max", "mean"),
        bn_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"srops.SpatialAttention: 'kernel_size' must be an odd int >= 1, got {kernel_size!r}")
        if tuple(pool_order) not in _POOL_ORDERS:
            raise ValueError(f"srops.SpatialAttention: 'pool_order' must be one of {_POOL_ORDERS}, got {pool_order!r}")
        self.backend = backend
        self.pool_order = tuple(pool_order)
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=bn_momentum) if bn else None
        self.register_load_state_dict_pre_hook(peer_load_hook)

    @classmethod
    def from_state_dict(cls, state_dict: dict, layout: str, **overrides) -> "SpatialAttention":
        """A module configured as the peer's (``"official"``, ``"timm"``) holding its weights."""
        return from_state_dict(cls, state_dict, layout, **overrides)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[B, 2, H, W]`` pooled map (channels [max, mean]) → ``[B, 1, H, W]`` gate logits."""
        if self.pool_order == ("max", "mean"):
            z = self.conv(pooled)
        else:  # the weights expect [mean, max]
            z = TF.conv2d(pooled, self.conv.weight.flip(1), self.conv.bias, padding=self.conv.padding)
        return self.bn(z) if self.bn is not None else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"srops.SpatialAttention: input must be [B, C, H, W], got shape {tuple(x.shape)}")
        return spatial_attention(x, self.logits, backend=backend_for(self.backend))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel gate, then spatial gate.

    Args:
        channels, reduction, pool, mlp_bn: as :class:`ChannelAttention`.
        kernel_size, spatial_bn, spatial_bias: as :class:`SpatialAttention` (``bn``, ``bias``).
        backend: see :func:`srops.functional.cbam`.
        mlp_bias, mlp_hidden: as :class:`ChannelAttention` (``mlp_bias``, ``hidden``).
        spatial_pool_order, bn_momentum: as :class:`SpatialAttention` (``pool_order``, ``bn_momentum``).

    Defaults are the official CBAM (avg+max, r = 16, 7×7 conv without bias, BN).
    Parameters at C = 64: 680; with ``mlp_bn=True`` (CBAM study) 688.
    timm's ``CbamModule`` is ``CBAM(C, mlp_bias=False, spatial_pool_order=("mean", "max"),
    bn_momentum=0.1)`` (its hidden width is round(C / 16), not C // 16: pass it as
    ``mlp_hidden``, or use :meth:`from_state_dict`). ``load_state_dict`` also takes the
    official CBAM and timm keys (docs/ops.md §D).
    """

    #: The srops ops (``srops.backends()`` names) this module runs: what its ``backend`` argument selects for.
    OPS: ClassVar[tuple[str, ...]] = ("cbam",)
    PEER_LAYOUTS: ClassVar[PeerLayouts] = CBAM_PEERS

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
        mlp_bias: bool = True,
        spatial_pool_order: Sequence[str] = ("max", "mean"),
        bn_momentum: float = 0.01,
        mlp_hidden: int | None = None,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.channel = ChannelAttention(channels, reduction, pool, mlp_bn, backend, mlp_bias, mlp_hidden)
        self.spatial = SpatialAttention(kernel_size, spatial_bn, spatial_bias, backend, spatial_pool_order, bn_momentum)
        self.register_load_state_dict_pre_hook(peer_load_hook)

    @classmethod
    def from_state_dict(cls, state_dict: dict, layout: str, **overrides) -> "CBAM":
        """A module configured as the peer's (``"official"``, ``"timm"``) holding its weights."""
        return from_state_dict(cls, state_dict, layout, **overrides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_channels("CBAM", x, self.channel.channels)
        return cbam(x, self.channel.mlp, self.spatial.logits, self.channel.pool, backend=backend_for(self.backend))


def _check_channels(name: str, x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"srops.{name}: input must be [B, {channels}, H, W], got {shape}")
