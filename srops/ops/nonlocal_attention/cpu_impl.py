"""The compiled CPU flash ops ``srops::nonlocal_attention_fwd/bwd``: fake tensors, autograd, backend.

``nonlocal_attention_fwd(q [B, N, d], k [B, M, d], v [B, M, dv], scale)`` returns ``out [B, N, dv]``
and the row log-sum-exp ``lse [B, N]`` of the scaled scores; ``nonlocal_attention_bwd`` recomputes
the probabilities block by block from ``lse`` (see ``csrc/nonlocal_attention/nonlocal_attention.h``).
Neither stores the N×M scores. float16/bfloat16 inputs go to the ops as they are: computed in float32
inside (no float32 copies, no conversion nodes in the autograd graph), the output and gradients rounded
once to the input dtype; ``lse`` is float32 then.

Double backward: under ``create_graph=True`` the backward differentiates the reference, recomputed
from the saved q, k, v, so higher-order gradients are exact (at the reference's O(B·N·M) memory for
that backward only). Only imported when ``srops._C`` loaded.
"""
from __future__ import annotations

import torch

from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref

_ops = torch.ops.srops
OPS = ("nonlocal_attention_fwd", "nonlocal_attention_bwd")


@torch.library.register_fake("srops::nonlocal_attention_fwd")
def _fwd_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    B, N = q.shape[:2]
    lse_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    return q.new_empty(B, N, v.shape[2]), q.new_empty(B, N, dtype=lse_dtype)


@torch.library.register_fake("srops::nonlocal_attention_bwd")
def _bwd_fake(grad, q, k, v, out, lse, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v))


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, ctx.scale = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(q, k, v, out, lse)


def _backward(ctx, grad: torch.Tensor, _grad_lse):
    q, k, v, out, lse = ctx.saved_tensors
    need = ctx.needs_input_grad[:3]
    if grad is None or not any(need):
        return None, None, None, None
    if torch.is_grad_enabled():  # create_graph=True: a differentiable backward through the reference
        wrt = [t if t.requires_grad else t.detach().requires_grad_() for t in (q, k, v)]
        with torch.enable_grad():
            ref = nonlocal_attention_ref(*wrt, ctx.scale)
        taken = [t for t, n in zip(wrt, need) if n]
        it = iter(torch.autograd.grad(ref, taken, grad, create_graph=True))
        grads = [next(it) if n else None for n in need]
    else:
        grads = _ops.nonlocal_attention_bwd(grad.contiguous(), q, k, v, out, lse, ctx.scale)
    return tuple(g if n else None for g, n in zip(grads, need)) + (None,)


torch.library.register_autograd("srops::nonlocal_attention_fwd", _backward, setup_context=_setup_context)


def nonlocal_attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v on the C++ flash kernels; q ``[B, N, d]``, k ``[B, M, d]``, v ``[B, M, dv]``."""
    out, _ = _ops.nonlocal_attention_fwd(q, k, v, float(scale))
    return out
