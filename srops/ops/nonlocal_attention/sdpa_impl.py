"""Non-local attention through PyTorch's scaled-dot-product attention.

Layouts: q ``[B, N, d]``, k ``[B, M, d]``, v ``[B, M, dv]`` → ``[B, N, dv]``; SDPA sees them as
single-head ``[B, 1, ·, ·]`` contiguous copies (:func:`as_heads`).

The scale is always passed explicitly (SDPA's default is 1/√d, the non-local
default is 1). Inputs are made contiguous first: given strided views (NonLocal2d's transposed
maps), PyTorch's CPU SDPA falls back to its math kernel, which stores the N×M
score matrix. The head dim is inserted before that copy, so that under
``torch.compile`` SDPA's inputs, which it saves for backward, are the copies
themselves rather than 4-D views of them: Inductor cannot yet save such a view
when its sides are symbolic (dynamic shapes, pytorch/pytorch#185510).

On CPU, float16/bfloat16 inputs are computed in float32 (autocast off) and the result rounded
back once: PyTorch's CPU flash kernel is slower in half precision than in float32 (forward plus
backward at B = 64, N = 144, M = 36, d = 16 on 2 cores: 12.0 ms bf16 against 2.8 ms float32), and
q, k, v are O(N·d), so the float32 copies cost little memory.

Non-finite inputs: SDPA's kernels treat a row whose scores are all −inf (or, in the CPU flash
kernel's short rows, all NaN) as fully masked and return zeros, where softmax gives NaN. Such a
row is exactly one whose query holds a non-finite value or whose item's every key does (every
score of it is then ±inf or NaN); :func:`nan_rows` finds them from q and k (O((N + M)·d)) and the
output is NaN there, as the reference's.

:class:`SdpaKernels` is the forward/backward pair without autograd that the frontend's autograd
Function calls (first-order backward without keeping a graph): on CPU with d = dv PyTorch's flash
kernel and its backward op; otherwise SDPA's forward, recomputed under autograd in backward.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

_aten = torch.ops.aten
_HAS_CPU_FLASH = hasattr(_aten, "_scaled_dot_product_flash_attention_for_cpu") and hasattr(
    _aten, "_scaled_dot_product_flash_attention_for_cpu_backward")


def nan_rows(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[..., N, 1]``: NaN on the rows softmax(q kᵀ) makes NaN whatever the kernel, else 0 (see module doc).

    ``q [..., N, d]``, ``k [..., M, d]``: a row is NaN when its query has a non-finite value or when
    every key of its item has one. Computed as sums of ``x · 0`` (0, or NaN for ±inf and NaN), which
    cost far less than ``isfinite(...).all()`` on CPU and cannot overflow.
    """
    q, k = q.detach(), k.detach()
    rows = (q * 0).sum(-1, keepdim=True)
    keys = (k * 0).sum(-1).nanmean(-1, keepdim=True)  # NaN only when every key is NaN
    return rows + keys.unsqueeze(-1)


def _fill_nan_rows(out: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``out`` with the :func:`nan_rows` set to NaN (in place unless autograd saved ``out``)."""
    rows = nan_rows(q, k)
    return out + rows if out.requires_grad else out.add_(rows)


def _no_autocast(t: torch.Tensor):
    return torch.autocast("cpu", enabled=False) if t.device.type == "cpu" else contextlib.nullcontext()


def as_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[B, ·, ·]`` → contiguous ``[B, 1, ·, ·]`` copies (float32 for 16-bit CPU inputs), recorded by autograd."""
    if q.device.type == "cpu" and q.dtype in (torch.float16, torch.bfloat16):
        q, k, v = q.float(), k.float(), v.float()
    if torch.compiler.is_compiling():  # always a fresh buffer, never a view (module doc)
        return (q.unsqueeze(1).clone(memory_format=torch.contiguous_format),
                k.unsqueeze(1).clone(memory_format=torch.contiguous_format),
                v.unsqueeze(1).clone(memory_format=torch.contiguous_format))
    return q.unsqueeze(1).contiguous(), k.unsqueeze(1).contiguous(), v.unsqueeze(1).contiguous()


def from_heads(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 1, N, dv]`` → ``[B, N, dv]`` in ``dtype``."""
    return out.squeeze(1).to(dtype)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """SDPA of ``[B, 1, ·, ·]`` heads with the reference's NaN rows."""
    with _no_autocast(q):
        out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return _fill_nan_rows(out, q, k)


def nonlocal_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v for q [B, N, d], k [B, M, d], v [B, M, dv] → [B, N, dv] (SDPA's own autograd)."""
    return from_heads(_attend(*as_heads(q, k, v), scale), q.dtype)


class SdpaKernels:
    """Forward and first-order backward on :func:`as_heads` tensors, called with autograd off."""

    @staticmethod
    def _flash(q: torch.Tensor, v: torch.Tensor) -> bool:
        return _HAS_CPU_FLASH and q.device.type == "cpu" and q.shape[-1] == v.shape[-1]

    @classmethod
    def forward(cls, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, ...]:
        """``(out, *saved extras)``: the row log-sum-exp of the CPU flash kernel, else nothing."""
        if not cls._flash(q, v):
            return (_attend(q, k, v, scale),)
        with _no_autocast(q):
            out, lse = _aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, scale=scale)
        return _fill_nan_rows(out, q, k), lse

    @classmethod
    def backward(cls, grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                 *extra: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dq, dk, dv)`` for the output gradient ``grad``."""
        if extra:
            with _no_autocast(q):
                return _aten._scaled_dot_product_flash_attention_for_cpu_backward(
                    grad.contiguous(), q, k, v, out, extra[0], 0.0, False, scale=scale)
        qi, ki, vi = (t.detach().requires_grad_() for t in (q, k, v))
        with torch.enable_grad(), _no_autocast(q):
            again = F.scaled_dot_product_attention(qi, ki, vi, scale=scale)
        dq, dk, dv = torch.autograd.grad(again, (qi, ki, vi), grad)
        return dq, dk, dv
