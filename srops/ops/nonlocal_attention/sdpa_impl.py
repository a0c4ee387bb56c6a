"""Non-local attention through ``torch.nn.functional.scaled_dot_product_attention``.

The scale is always passed explicitly (SDPA's default is 1/√d, the non-local
default is 1). Any SDPA kernel may run; single head, so the head dim is 1.
Inputs are made contiguous first: given strided views (NonLocal2d's transposed
maps), PyTorch's CPU SDPA falls back to its math kernel, which stores the N×M
score matrix. The head dim is inserted before that copy, so that under
``torch.compile`` SDPA's inputs, which it saves for backward, are the copies
themselves rather than 4-D views of them: Inductor cannot yet save such a view
when its sides are symbolic (dynamic shapes, pytorch/pytorch#185510).

On CPU, float16/bfloat16 inputs are computed in float32 (autocast off) and the result rounded
back once: PyTorch's CPU flash kernel is slower in half precision than in float32 (forward plus
backward at B = 64, N = 144, M = 36, d = 16 on 2 cores: 12.0 ms bf16 against 2.8 ms float32), and
q, k, v are O(N·d), so the float32 copies cost little memory.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nonlocal_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    dtype = q.dtype
    if q.device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cpu", enabled=False):
            out = nonlocal_attention_sdpa(q.float(), k.float(), v.float(), scale)
        return out.to(dtype)
    q, k, v = (t.unsqueeze(1).contiguous() for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out.squeeze(1)
