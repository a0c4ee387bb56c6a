"""The compiled fused-CBAM ops ``srops::cbam_*``: fake tensors, autograd and the fused backends.

Three passes over x ``[B, C, H, W]`` (see ``csrc/cbam/cbam.h``):

1. ``cbam_channel_pool(x, avg, max)`` → stats ``[B, C, P]`` (avg first) and the argmax ``[B, C]``
   of each channel's max over H·W; the MLP (a callable) maps each pooled ``[B, C]`` vector to
   logits and c = σ(Σ_p logits_p) ``[B, C]``.
2. ``cbam_spatial_pool(x, c)`` → ``[B, 2, H, W]`` = [max_C, mean_C] of y = x·c without writing y,
   and the argmax channel ``[B, H, W]``; the conv callable and a sigmoid give s ``[B, 1, H, W]``.
3. ``cbam_apply(x, c, s)`` → x·c·s.

Channel attention alone is passes 1 and 3 with ``s=None``; spatial attention alone is passes 2
and 3 with ``c=None``. Each pass is an op with its own backward op; autograd around them carries
the gradients to x, to c (the MLP's parameters) and to s (the conv's and BatchNorm's).

Ties in a max: the gradient goes wholly to the first maximal element (the lowest H·W index for
the channel max, the lowest channel for the max over channels), which is the reference's
routing on CPU (``torch.max(dim)``); a NaN counts as the maximum, the first NaN wins.
Backward ops are not themselves differentiable (no double backward).
Only imported when ``srops._C`` loaded.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]
_ops = torch.ops.srops


# ---- fake (meta) implementations -----------------------------------------------------------


@torch.library.register_fake("srops::cbam_channel_pool")
def _channel_pool_fake(x: torch.Tensor, avg: bool, max: bool) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: A002
    B, C = x.shape[:2]
    stats = x.new_empty(B, C, int(avg) + int(max))
    return stats, x.new_empty((B, C) if max else (0,), dtype=torch.int64)


@torch.library.register_fake("srops::cbam_channel_pool_backward")
def _channel_pool_backward_fake(
    grad_stats: torch.Tensor, x: torch.Tensor, argmax: torch.Tensor, avg: bool, max: bool  # noqa: A002
) -> torch.Tensor:
    return x.new_empty(x.shape)


@torch.library.register_fake("srops::cbam_spatial_pool")
def _spatial_pool_fake(x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    B, _, H, W = x.shape
    return x.new_empty(B, 2, H, W), x.new_empty((B, H, W), dtype=torch.int64)


@torch.library.register_fake("srops::cbam_spatial_pool_backward")
def _spatial_pool_backward_fake(
    grad_pooled: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, argmax: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return x.new_empty(x.shape), x.new_empty(tuple(x.shape[:2]) if c is not None else (0,))


@torch.library.register_fake("srops::cbam_apply")
def _apply_fake(x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(x.shape)


@torch.library.register_fake("srops::cbam_apply_backward")
def _apply_backward_fake(
    grad: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, C, H, W = x.shape
    dc = x.new_empty((B, C) if c is not None else (0,))
    ds = x.new_empty((B, H, W) if s is not None else (0,))
    return x.new_empty(x.shape), dc, ds


# ---- autograd ----------------------------------------------------------------------------------


def _channel_pool_setup(ctx, inputs, output) -> None:
    x, ctx.avg, ctx.max = inputs
    ctx.save_for_backward(x, output[1])


def _channel_pool_backward(ctx, grad_stats: torch.Tensor | None, _grad_argmax):
    x, argmax = ctx.saved_tensors
    if grad_stats is None or not ctx.needs_input_grad[0]:
        return None, None, None
    return _ops.cbam_channel_pool_backward(grad_stats.contiguous(), x, argmax, ctx.avg, ctx.max), None, None


def _spatial_pool_setup(ctx, inputs, output) -> None:
    x, c = inputs
    ctx.has_c = c is not None
    ctx.save_for_backward(x, c, output[1])


def _spatial_pool_backward(ctx, grad_pooled: torch.Tensor | None, _grad_argmax):
    x, c, argmax = ctx.saved_tensors
    if grad_pooled is None:
        return None, None
    dx, dc = _ops.cbam_spatial_pool_backward(grad_pooled.contiguous(), x, c if ctx.has_c else None, argmax)
    return (dx if ctx.needs_input_grad[0] else None), (dc if ctx.has_c and ctx.needs_input_grad[1] else None)


def _apply_setup(ctx, inputs, output) -> None:
    x, c, s = inputs
    ctx.has_c, ctx.has_s = c is not None, s is not None
    ctx.save_for_backward(x, c, s)


def _apply_backward(ctx, grad: torch.Tensor):
    x, c, s = ctx.saved_tensors
    dx, dc, ds = _ops.cbam_apply_backward(grad.contiguous(), x, c if ctx.has_c else None, s if ctx.has_s else None)
    need = ctx.needs_input_grad
    return (dx if need[0] else None), (dc if ctx.has_c and need[1] else None), (ds if ctx.has_s and need[2] else None)


torch.library.register_autograd("srops::cbam_channel_pool", _channel_pool_backward, setup_context=_channel_pool_setup)
torch.library.register_autograd("srops::cbam_spatial_pool", _spatial_pool_backward, setup_context=_spatial_pool_setup)
torch.library.register_autograd("srops::cbam_apply", _apply_backward, setup_context=_apply_setup)


# ---- fused backends -------------------------------------------------------------------------------


def _channel_gate(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    """Passes 1 + MLP: c ``[B, C]`` in x's dtype."""
    avg, mx = "avg" in pool, "max" in pool
    stats, _ = _ops.cbam_channel_pool(x, avg, mx)
    column = {"avg": 0, "max": int(avg)}
    logits = sum(mlp(stats[:, :, column[p]]) for p in pool)
    return torch.sigmoid(logits).to(x.dtype)


def _spatial_gate(x: torch.Tensor, c: torch.Tensor | None, conv: Fn) -> torch.Tensor:
    """Pass 2 + conv: s ``[B, 1, H, W]`` in x's dtype, computed on x·c (or x)."""
    pooled, _ = _ops.cbam_spatial_pool(x, c)
    if pooled.device.type == "cpu":
        # A 2→1 convolution's input gradient is several times faster channels-last on CPU (oneDNN);
        # the copy is 2/C of x.
        pooled = pooled.contiguous(memory_format=torch.channels_last)
    return torch.sigmoid(conv(pooled)).to(x.dtype)


def channel_gate_ext(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    return _channel_gate(x, mlp, pool)[:, :, None, None]


def spatial_gate_ext(x: torch.Tensor, conv: Fn) -> torch.Tensor:
    return _spatial_gate(x, None, conv)


def channel_attention_ext(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    return _ops.cbam_apply(x, _channel_gate(x, mlp, pool), None)


def spatial_attention_ext(x: torch.Tensor, conv: Fn) -> torch.Tensor:
    return _ops.cbam_apply(x, None, _spatial_gate(x, None, conv)[:, 0])


def cbam_ext(x: torch.Tensor, mlp: Fn, conv: Fn, pool: Sequence[str]) -> torch.Tensor:
    c = _channel_gate(x, mlp, pool)
    return _ops.cbam_apply(x, c, _spatial_gate(x, c, conv)[:, 0])
