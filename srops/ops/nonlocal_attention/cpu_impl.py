"""The compiled CPU flash ops ``srops::nonlocal_attention_fwd/bwd``: fake tensors and the backend.

``nonlocal_attention_fwd(q [B, N, d], k [B, M, d], v [B, M, dv], scale)`` returns ``out [B, N, dv]``
and the row log-sum-exp ``lse [B, N]`` of the scaled scores; ``nonlocal_attention_bwd`` recomputes
the probabilities block by block from ``lse`` (see ``csrc/nonlocal_attention/nonlocal_attention.h``).
Neither stores the N×M scores. float16/bfloat16 inputs go to the ops as they are: computed in float32
inside (no float32 copies, no conversion nodes in the autograd graph), the output and gradients rounded
once to the input dtype; ``lse`` is float32 then.

Autograd is registered in C++ (``csrc/nonlocal_attention/nonlocal_attention_autograd.cpp``: one node,
no Python in a first-order backward). Double backward: under ``create_graph=True`` that backward
differentiates the reference, recomputed from the saved q, k, v, so higher-order gradients are exact
(at the reference's O(B·N·M) memory for that backward only). Only imported when ``srops._C`` loaded.
"""
from __future__ import annotations

import torch

from srops import _ext

_ops = torch.ops.srops
OPS = _ext.fwd_bwd("nonlocal_attention")


@torch.library.register_fake("srops::nonlocal_attention_fwd")
def _fwd_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    B, N = q.shape[:2]
    lse_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    return q.new_empty(B, N, v.shape[2]), q.new_empty(B, N, dtype=lse_dtype)


@torch.library.register_fake("srops::nonlocal_attention_bwd")
def _bwd_fake(grad, q, k, v, out, lse, scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    fmt = torch.contiguous_format
    return (torch.empty_like(q, memory_format=fmt), torch.empty_like(k, memory_format=fmt),
            torch.empty_like(v, memory_format=fmt))


def nonlocal_attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v on the C++ flash kernels; q ``[B, N, d]``, k ``[B, M, d]``, v ``[B, M, dv]``."""
    out, _ = _ops.nonlocal_attention_fwd(q, k, v, float(scale))
    return out
