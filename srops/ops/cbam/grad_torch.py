"""The three fused-CBAM passes' backward as differentiable torch ops (double backward).

Used by ``ext_impl`` when autograd records the backward (``create_graph=True``): gradient
penalties, ``gradgradcheck``. Same routing as the kernels: a max gradient goes wholly to the
saved argmax. Layouts: x ``[B, C, H, W]``, c ``[B, C]``, s ``[B, H, W]``; channel argmax
``[B, C]`` (flat H·W index), spatial argmax ``[B, H, W]`` (channel index), int64.
"""
from __future__ import annotations

import torch


def channel_pool_grad(grad_stats: torch.Tensor, x: torch.Tensor, argmax: torch.Tensor | None, avg: bool,
                      mx: bool) -> torch.Tensor:
    """dx of ``cbam_channel_pool_fwd``: grad_stats ``[B, C, avg + max]`` → ``[B, C, H, W]``."""
    B, C, H, W = x.shape
    dx = grad_stats.new_zeros(B, C, H * W)
    if avg:
        dx = dx + grad_stats[:, :, :1] / (H * W)
    if mx:
        assert argmax is not None, "a max pooling saves its argmax"
        dx = dx.scatter_add(2, argmax[:, :, None], grad_stats[:, :, -1:])
    return dx.view(B, C, H, W)


def spatial_pool_grad(grad_pooled: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None,
                      argmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(dx, dc) of ``cbam_spatial_pool_fwd``: grad_pooled ``[B, 2, H, W]`` ([max, mean] over channels of x·c)."""
    C = x.shape[1]
    dy = (grad_pooled[:, 1:] / C).expand_as(x).scatter_add(1, argmax[:, None], grad_pooled[:, :1])
    if c is None:
        return dy, None
    return dy * c[:, :, None, None], (dy * x).sum((2, 3))


def apply_grad(grad: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(dx, dc, ds) of ``cbam_apply_fwd`` (x·c·s) for the upstream gradient grad ``[B, C, H, W]``."""
    cc = c[:, :, None, None] if c is not None else None
    ss = s[:, None] if s is not None else None
    gc = grad if cc is None else grad * cc
    dx = gc if ss is None else gc * ss
    dc = None if c is None else ((grad * x) if ss is None else (grad * x * ss)).sum((2, 3))
    ds = None if s is None else (gc * x).sum(1)
    return dx, dc, ds
