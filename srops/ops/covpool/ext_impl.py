"""The compiled covariance-pooling ops ``srops::covpool_fwd/bwd``: fake tensors and autograd.

Only imported when ``srops._C`` loaded. The kernels take float32/float64
``[B, C, M]``; other float dtypes are computed in float32 and cast back.

Double backward: under ``create_graph=True`` the backward is computed with differentiable
torch ops from the same formula, dx = (G + Gᵀ)(X − μ1ᵀ)/M, so second-order gradients are exact.
"""
from __future__ import annotations

import torch

from srops.ops.covpool.reference import compute_dtype


@torch.library.register_fake("srops::covpool_fwd")
def _covpool_fwd_fake(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[0], x.shape[1], x.shape[1])


@torch.library.register_fake("srops::covpool_bwd")
def _covpool_bwd_fake(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(inputs[0])


def _backward(ctx, grad: torch.Tensor) -> torch.Tensor:
    (x,) = ctx.saved_tensors
    if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
        return torch.bmm(grad + grad.transpose(1, 2), x - x.mean(dim=2, keepdim=True)) / x.shape[2]
    return torch.ops.srops.covpool_bwd(grad.contiguous(), x)


torch.library.register_autograd("srops::covpool_fwd", _backward, setup_context=_setup_context)


def covpool_ext(x: torch.Tensor) -> torch.Tensor:
    """x ``[B, C, M]`` → ``[B, C, C]`` on the compiled kernel of x's device."""
    xf = x.to(compute_dtype(x.dtype)).contiguous()
    return torch.ops.srops.covpool_fwd(xf).to(x.dtype)
