"""The compiled fused-CBAM ops ``srops::cbam_*``: fake tensors, autograd and the fused backends.

Three passes over x ``[B, C, H, W]`` (see ``csrc/cbam/cbam.h``):

1. ``cbam_channel_pool_fwd(x, avg, max)`` → stats ``[B, C, P]`` (avg first) and the argmax ``[B, C]``
   of each channel's max over H·W; the MLP (a callable) maps each pooled ``[B, C]`` vector to
   logits and c = σ(Σ_p logits_p) ``[B, C]``.
2. ``cbam_spatial_pool_fwd(x, c)`` → ``[B, 2, H, W]`` = [max_C, mean_C] of y = x·c without writing y,
   and the argmax channel ``[B, H, W]``; the conv callable and a sigmoid give s ``[B, 1, H, W]``.
3. ``cbam_apply_fwd(x, c, s)`` → x·c·s.

Channel attention alone is passes 1 and 3 with ``s=None``; spatial attention alone is passes 2
and 3 with ``c=None``.

Backward, eager mode (the fused backward): x's gradient is written once. The pass that reads x
first (channel pooling, or spatial pooling when there is no channel gate) is the only autograd
node that takes x; the later passes take x detached and their backward ops return only the gate
gradients (``input_grad=False``: ``cbam_apply_bwd`` reads grad and x for dc and ds,
``cbam_spatial_pool_bwd`` reads x for dc) and leave grad and the pooled gradient in a
``_InputGrad`` shared by the three nodes. Autograd runs the first pass's node last, since every
gate depends on it (``cbam_apply_fwd`` also takes its output as an anchor, so this holds for any MLP
or conv); its backward then writes dx = c·(grad·s + dpool_spatial) + dpool_channel with
``cbam_input_bwd``: one read of grad and x's write, instead of three x-sized gradients that
autograd would add. Backward traffic: reads of grad, x, x, grad and one write.

Under ``torch.compile`` (or where ``cbam_input_bwd`` has no kernel) each pass is an op with
its own registered backward op (below), whose x-gradients autograd adds; the MLP's and conv's
parameters get their gradients through ordinary autograd in both modes.

Ties in a max: the gradient goes wholly to the first maximal element (the lowest H·W index for
the channel max, the lowest channel for the max over channels), which is the reference's
routing on CPU (``torch.max(dim)``); a NaN counts as the maximum, the first NaN wins.
Double backward (``create_graph=True``): the backward kernels are not differentiable, so when
autograd records the backward every node computes its gradients with the differentiable torch
formulas of ``grad_torch`` instead (in eager mode the later passes use the original x, kept in the
``_InputGrad``, and hand their x-gradients to the input node as graph-carrying tensors), which
makes second-order gradients exact. Only imported when ``srops._C`` loaded.
"""
from __future__ import annotations

import functools
import operator
from typing import Callable, Sequence

import torch

from srops import _ext
from srops.ops.cbam import grad_torch
from srops.ops.cbam.reference import conv_logits, mlp_logits

Fn = Callable[[torch.Tensor], torch.Tensor]
_ops = torch.ops.srops


# ---- fake (meta) implementations -----------------------------------------------------------


@torch.library.register_fake("srops::cbam_channel_pool_fwd")
def _channel_pool_fake(x: torch.Tensor, avg: bool, max: bool) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: A002
    B, C = x.shape[:2]
    stats = x.new_empty(B, C, int(avg) + int(max))
    return stats, x.new_empty((B, C) if max else (0,), dtype=torch.int64)


@torch.library.register_fake("srops::cbam_channel_pool_bwd")
def _channel_pool_backward_fake(
    grad_stats: torch.Tensor, x: torch.Tensor, argmax: torch.Tensor, avg: bool, max: bool  # noqa: A002
) -> torch.Tensor:
    return x.new_empty(x.shape)


@torch.library.register_fake("srops::cbam_spatial_pool_fwd")
def _spatial_pool_fake(x: torch.Tensor, c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    B, _, H, W = x.shape
    return x.new_empty(B, 2, H, W), x.new_empty((B, H, W), dtype=torch.int64)


@torch.library.register_fake("srops::cbam_spatial_pool_bwd")
def _spatial_pool_backward_fake(
    grad_pooled: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, argmax: torch.Tensor, input_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    dx = x.new_empty(x.shape if input_grad else (0,))
    return dx, x.new_empty(tuple(x.shape[:2]) if c is not None else (0,))


@torch.library.register_fake("srops::cbam_apply_fwd")
def _apply_fake(x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(x.shape)


@torch.library.register_fake("srops::cbam_apply_bwd")
def _apply_backward_fake(
    grad: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None, input_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, C, H, W = x.shape
    dc = x.new_empty((B, C) if c is not None else (0,))
    ds = x.new_empty((B, H, W) if s is not None else (0,))
    return x.new_empty(x.shape if input_grad else (0,)), dc, ds


# ---- autograd ----------------------------------------------------------------------------------


def _channel_pool_setup(ctx, inputs, output) -> None:
    x, ctx.avg, ctx.max = inputs
    ctx.save_for_backward(x, output[1])


def _channel_pool_backward(ctx, grad_stats: torch.Tensor | None, _grad_argmax):
    x, argmax = ctx.saved_tensors
    if grad_stats is None or not ctx.needs_input_grad[0]:
        return None, None, None
    if torch.is_grad_enabled():  # create_graph=True
        return grad_torch.channel_pool_grad(grad_stats, x, argmax, ctx.avg, ctx.max), None, None
    return _ops.cbam_channel_pool_bwd(grad_stats.contiguous(), x, argmax, ctx.avg, ctx.max), None, None


def _spatial_pool_setup(ctx, inputs, output) -> None:
    x, c = inputs
    ctx.has_c = c is not None
    ctx.save_for_backward(x, c, output[1])


def _spatial_pool_backward(ctx, grad_pooled: torch.Tensor | None, _grad_argmax):
    x, c, argmax = ctx.saved_tensors
    if grad_pooled is None:
        return None, None
    if torch.is_grad_enabled():  # create_graph=True
        dx, dc = grad_torch.spatial_pool_grad(grad_pooled, x, c if ctx.has_c else None, argmax)
    else:
        dx, dc = _ops.cbam_spatial_pool_bwd(grad_pooled.contiguous(), x, c if ctx.has_c else None, argmax)
    return (dx if ctx.needs_input_grad[0] else None), (dc if ctx.has_c and ctx.needs_input_grad[1] else None)


def _apply_setup(ctx, inputs, output) -> None:
    x, c, s = inputs
    ctx.has_c, ctx.has_s = c is not None, s is not None
    ctx.save_for_backward(x, c, s)


def _apply_backward(ctx, grad: torch.Tensor):
    x, c, s = ctx.saved_tensors
    c, s = (c if ctx.has_c else None), (s if ctx.has_s else None)
    if torch.is_grad_enabled():  # create_graph=True
        dx, dc, ds = grad_torch.apply_grad(grad, x, c, s)
    else:
        dx, dc, ds = _ops.cbam_apply_bwd(grad.contiguous(), x, c, s)
    need = ctx.needs_input_grad
    return (dx if need[0] else None), (dc if ctx.has_c and need[1] else None), (ds if ctx.has_s and need[2] else None)


torch.library.register_autograd("srops::cbam_channel_pool_fwd", _channel_pool_backward,
                                setup_context=_channel_pool_setup)
torch.library.register_autograd("srops::cbam_spatial_pool_fwd", _spatial_pool_backward,
                                setup_context=_spatial_pool_setup)
torch.library.register_autograd("srops::cbam_apply_fwd", _apply_backward, setup_context=_apply_setup)


@torch.library.register_fake("srops::cbam_input_bwd")
def _input_backward_fake(grad, c, s, grad_pooled, spatial_argmax, grad_stats, channel_argmax, avg, max):  # noqa: A002
    return grad.new_empty(grad.shape)


# ---- the fused backward (eager) ------------------------------------------------------------------


class _InputGrad:
    """What the gate nodes of one fused CBAM call leave for the node that writes x's gradient."""

    def __init__(self, avg: bool, mx: bool) -> None:
        self.avg, self.max = avg, mx
        self.c: torch.Tensor | None = None  # [B, C], detached
        self.s: torch.Tensor | None = None  # [B, H, W], detached
        self.channel_argmax: torch.Tensor | None = None
        self.spatial_argmax: torch.Tensor | None = None
        self.x: torch.Tensor | None = None  # the original x (with its graph), for create_graph backward
        self._clear()

    def _clear(self) -> None:
        self.dx_parts: list[torch.Tensor] = []  # create_graph: x-gradients of the later passes
        self.grad: torch.Tensor | None = None
        self.grad_pooled: torch.Tensor | None = None
        self.grad_stats: torch.Tensor | None = None

    def dx_sum(self, own: torch.Tensor) -> torch.Tensor:
        """x's whole gradient as the input node's own part plus the later passes' (``dx_parts``).

        Used under create_graph (differentiable parts), and in a backward pass that does not reach
        ``cbam_apply_fwd``'s node (e.g. the second backward of a gradient penalty), where each pass
        that runs adds its own x-gradient.
        """
        dx = own
        for part in self.dx_parts:
            dx = dx + part
        self._clear()
        return dx

    def dx(self) -> torch.Tensor:
        """The fused dx, once ``cbam_apply_fwd``'s node has run in this backward pass (it runs first)."""
        has_pooled = self.grad_pooled is not None
        has_stats = self.grad_stats is not None
        dx = _ops.cbam_input_bwd(
            self.grad, self.c, self.s, self.grad_pooled, self.spatial_argmax if has_pooled else None,
            self.grad_stats, self.channel_argmax if has_stats and self.max else None, self.avg, self.max)
        self._clear()  # drop the references now; a retained graph's next backward sets them again
        return dx


class _ChannelPoolInput(torch.autograd.Function):
    """Pass 1 on x itself; its backward writes the whole dx."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, state: _InputGrad) -> torch.Tensor:
        stats, argmax = _ops.cbam_channel_pool_fwd(x, state.avg, state.max)
        state.channel_argmax = argmax if state.max else None
        ctx.state = state
        return stats

    @staticmethod
    def backward(ctx, grad_stats: torch.Tensor):
        state = ctx.state
        if not ctx.needs_input_grad[0]:
            return None, None
        if torch.is_grad_enabled():  # create_graph=True
            own = grad_torch.channel_pool_grad(grad_stats, state.x, state.channel_argmax, state.avg, state.max)
            return state.dx_sum(own), None
        if state.grad is None:  # cbam_apply_fwd's node did not run in this pass: this pass's own dx
            x = state.x.detach()
            argmax = state.channel_argmax if state.max else x.new_empty(0, dtype=torch.int64)
            own = _ops.cbam_channel_pool_bwd(grad_stats.contiguous(), x, argmax, state.avg, state.max)
            return state.dx_sum(own), None
        state.grad_stats = grad_stats.contiguous()
        return state.dx(), None


class _SpatialPool(torch.autograd.Function):
    """Pass 2; takes x itself only when there is no channel gate (then its backward writes dx)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, c: torch.Tensor | None, state: _InputGrad) -> torch.Tensor:
        pooled, argmax = _ops.cbam_spatial_pool_fwd(x, c)
        state.spatial_argmax = argmax
        ctx.state, ctx.has_c = state, c is not None
        ctx.save_for_backward(x, c, argmax)
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled: torch.Tensor):
        state = ctx.state
        x, c, argmax = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: x here may be detached, use the original
            dx, dc = grad_torch.spatial_pool_grad(grad_pooled, state.x, c if ctx.has_c else None, argmax)
            dc = dc if ctx.has_c and ctx.needs_input_grad[1] else None
            if ctx.needs_input_grad[0]:  # this node takes x itself (no channel gate)
                return state.dx_sum(dx), dc, None
            state.dx_parts.append(dx)
            return None, dc, None
        if state.grad is None:  # cbam_apply_fwd's node did not run in this pass: this pass's own dx
            need_c = ctx.has_c and ctx.needs_input_grad[1]
            dx, dc = _ops.cbam_spatial_pool_bwd(grad_pooled.contiguous(), x, c, argmax, True)
            dc = dc if need_c else None
            if ctx.needs_input_grad[0]:
                return state.dx_sum(dx), dc, None
            state.dx_parts.append(dx)
            return None, dc, None
        state.grad_pooled = grad_pooled = grad_pooled.contiguous()
        dc = None
        if ctx.has_c and ctx.needs_input_grad[1]:
            _, dc = _ops.cbam_spatial_pool_bwd(grad_pooled, x, c, argmax, False)
        return (state.dx() if ctx.needs_input_grad[0] else None), dc, None


class _Apply(torch.autograd.Function):
    """Pass 3 on detached x; ``anchor`` (the first pass's output) orders the input node after this one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, c: torch.Tensor | None, s: torch.Tensor | None, anchor: torch.Tensor,
                state: _InputGrad) -> torch.Tensor:
        state.c = None if c is None else c.detach()
        state.s = None if s is None else s.detach()
        ctx.state, ctx.has_c, ctx.has_s = state, c is not None, s is not None
        ctx.save_for_backward(x, c, s)
        return _ops.cbam_apply_fwd(x, c, s)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, c, s = ctx.saved_tensors
        need = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: differentiable, on the original x
            dx, dc, ds = grad_torch.apply_grad(grad, ctx.state.x, c if ctx.has_c else None, s if ctx.has_s else None)
            ctx.state.dx_parts.append(dx)
            return None, (dc if ctx.has_c and need[1] else None), (ds if ctx.has_s and need[2] else None), None, None
        ctx.state.grad = grad = grad.contiguous()
        dc = ds = None
        if (ctx.has_c and need[1]) or (ctx.has_s and need[2]):
            _, dc, ds = _ops.cbam_apply_bwd(grad, x, c, s, False)
        return None, (dc if ctx.has_c and need[1] else None), (ds if ctx.has_s and need[2] else None), None, None


_DISPATCH_KEY = {"cpu": "CPU", "cuda": "CUDA"}


def _fused_backward(x: torch.Tensor) -> bool:
    """The eager fused backward applies: not being traced, and the device has its kernel."""
    return not torch.compiler.is_compiling() and _ext.has_kernel(
        "cbam_input_bwd", _DISPATCH_KEY.get(x.device.type, ""))


def _gate_logits(stats: torch.Tensor, mlp: Fn, pool: Sequence[str], avg: bool) -> torch.Tensor:
    column = {"avg": 0, "max": int(avg)}
    return functools.reduce(operator.add, (mlp_logits(mlp, stats[:, :, column[p]]) for p in pool))


def _spatial_logits(pooled: torch.Tensor, conv: Fn) -> torch.Tensor:
    if pooled.device.type == "cpu" and pooled.dtype in (torch.float32, torch.float64):
        # A 2→1 convolution's input gradient is several times faster channels-last on CPU (oneDNN);
        # the copy is 2/C of x. Not for float16/bfloat16: PyTorch's half-precision CPU BatchNorm
        # backward on that layout overflows (NaN) or loses precision, so those keep the default layout.
        pooled = pooled.contiguous(memory_format=torch.channels_last)
    return conv_logits(conv, pooled)


def _attention_fused(x: torch.Tensor, mlp: Fn | None, conv: Fn | None, pool: Sequence[str]) -> torch.Tensor:
    """Channel attention (conv None), spatial attention (mlp None) or CBAM with the fused backward."""
    avg, mx = "avg" in pool, "max" in pool
    state = _InputGrad(avg, mx)
    state.x = x
    x_det = x.detach()
    c = s = None
    if mlp is not None:
        anchor = stats = _ChannelPoolInput.apply(x, state)
        c = torch.sigmoid(_gate_logits(stats, mlp, pool, avg)).to(x.dtype)
    if conv is not None:
        pooled = _SpatialPool.apply(x if mlp is None else x_det, c, state)
        if mlp is None:
            anchor = pooled
        s = torch.sigmoid(_spatial_logits(pooled, conv)).to(x.dtype)[:, 0]
    return _Apply.apply(x_det, c, s, anchor, state)


# ---- fused backends -------------------------------------------------------------------------------


def _channel_gate(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    """Passes 1 + MLP: c ``[B, C]`` in x's dtype."""
    avg = "avg" in pool
    stats, _ = _ops.cbam_channel_pool_fwd(x, avg, "max" in pool)
    return torch.sigmoid(_gate_logits(stats, mlp, pool, avg)).to(x.dtype)


def _spatial_gate(x: torch.Tensor, c: torch.Tensor | None, conv: Fn) -> torch.Tensor:
    """Pass 2 + conv: s ``[B, 1, H, W]`` in x's dtype, computed on x·c (or x)."""
    pooled, _ = _ops.cbam_spatial_pool_fwd(x, c)
    return torch.sigmoid(_spatial_logits(pooled, conv)).to(x.dtype)


def channel_gate_ext(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    return _channel_gate(x, mlp, pool)[:, :, None, None]


def spatial_gate_ext(x: torch.Tensor, conv: Fn) -> torch.Tensor:
    return _spatial_gate(x, None, conv)


def channel_attention_ext(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    if _fused_backward(x):
        return _attention_fused(x, mlp, None, pool)
    return _ops.cbam_apply_fwd(x, _channel_gate(x, mlp, pool), None)


def spatial_attention_ext(x: torch.Tensor, conv: Fn) -> torch.Tensor:
    if _fused_backward(x):
        return _attention_fused(x, None, conv, ())
    return _ops.cbam_apply_fwd(x, None, _spatial_gate(x, None, conv)[:, 0])


def cbam_ext(x: torch.Tensor, mlp: Fn, conv: Fn, pool: Sequence[str]) -> torch.Tensor:
    if _fused_backward(x):
        return _attention_fused(x, mlp, conv, pool)
    c = _channel_gate(x, mlp, pool)
    return _ops.cbam_apply_fwd(x, c, _spatial_gate(x, c, conv)[:, 0])


#: The fused backend's function of each CBAM op (the frontend registers them as ``cpu`` and ``cuda``).
FUSED_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "channel_gate": channel_gate_ext, "spatial_gate": spatial_gate_ext, "channel_attention": channel_attention_ext,
    "spatial_attention": spatial_attention_ext, "cbam": cbam_ext,
}
