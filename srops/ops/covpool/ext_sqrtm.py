"""The compiled ops ``srops::covpool_sqrtm_fwd/bwd``: fake tensors, autograd, Python entry points.

Only imported when ``srops._C`` loaded. ``covpool_sqrtm_fwd(x [B, C, M], iterations,
eps, row_mean)`` returns ``(out, mean, a, states, trace)``: the result ``[B, C, C]``
(``[B, C]`` with ``row_mean``) and what the backward needs (row means ``[B, C]``,
A = Σ/t ``[B, C, C]``, the iterates Y_k, Z_k, Y_kZ_k ``[B, 3(N-1), C, C]``, t ``[B]``).
All of these are float64 for float64 x and float32 otherwise. The CPU kernel takes
float32/float64 x; the CUDA kernel reads float16/bfloat16/float32/float64 x directly.

Double backward: under ``create_graph=True`` the backward differentiates the reference
(``covpool_sqrtm_ref``, recomputed from the saved x) with ``create_graph``, so second-order
gradients are exact; first-order backward always runs the kernel.
"""
from __future__ import annotations

import torch

from srops.ops.covpool.reference import compute_dtype, covpool_sqrtm_ref


@torch.library.register_fake("srops::covpool_sqrtm_fwd")
def _fwd_fake(
    x: torch.Tensor, iterations: int, eps: float, row_mean: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    b, c = x.shape[0], x.shape[1]
    dt = compute_dtype(x.dtype)
    out = x.new_empty((b, c) if row_mean else (b, c, c), dtype=dt)
    mean = x.new_empty((b, c), dtype=dt)
    a = x.new_empty((b, c, c), dtype=dt)
    states = x.new_empty((b, 3 * (iterations - 1), c, c), dtype=dt)
    trace = x.new_empty((b,), dtype=dt)
    return out, mean, a, states, trace


@torch.library.register_fake("srops::covpool_sqrtm_bwd")
def _bwd_fake(
    grad: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    a: torch.Tensor,
    states: torch.Tensor,
    trace: torch.Tensor,
    out: torch.Tensor,
    row_mean: bool,
) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    x, iterations, eps, row_mean = inputs
    out, mean, a, states, trace = output
    ctx.mark_non_differentiable(mean, a, states, trace)
    ctx.save_for_backward(x, mean, a, states, trace, out)
    ctx.row_mean, ctx.iterations, ctx.eps = row_mean, iterations, eps


def _backward(ctx, grad_out: torch.Tensor, *_unused: torch.Tensor):
    x, mean, a, states, trace, out = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: differentiate the reference, keeping its graph
        xg = x if x.requires_grad else x.detach().requires_grad_()  # dx is still a function of grad_out
        with torch.enable_grad():
            ref = covpool_sqrtm_ref(xg, ctx.iterations, ctx.eps, ctx.row_mean)
        (dx,) = torch.autograd.grad(ref, xg, grad_out, create_graph=True)
        return dx, None, None, None
    dx = torch.ops.srops.covpool_sqrtm_bwd(grad_out.contiguous(), x, mean, a, states, trace, out, ctx.row_mean)
    return dx, None, None, None


torch.library.register_autograd("srops::covpool_sqrtm_fwd", _backward, setup_context=_setup_context)


def covpool_sqrtm_cpu(x: torch.Tensor, iterations: int, eps: float, row_mean: bool) -> torch.Tensor:
    """x ``[B, C, M]`` (CPU) → Σ^½ ``[B, C, C]`` or its row mean ``[B, C]`` by the C++ CPU kernel.

    float16/bfloat16 x are computed in float32; the result has the dtype of x.
    """
    xf = x.to(compute_dtype(x.dtype)).contiguous()
    return torch.ops.srops.covpool_sqrtm_fwd(xf, iterations, eps, row_mean)[0].to(x.dtype)


def covpool_sqrtm_cuda(x: torch.Tensor, iterations: int, eps: float, row_mean: bool) -> torch.Tensor:
    """x ``[B, C, M]`` (CUDA, any float dtype, read as is) → as :func:`covpool_sqrtm_cpu`, float32 maths
    (float64 for float64 x)."""
    return torch.ops.srops.covpool_sqrtm_fwd(x.contiguous(), iterations, eps, row_mean)[0].to(x.dtype)
