"""Non-local attention through ``torch.nn.functional.scaled_dot_product_attention``.

The scale is always passed explicitly (SDPA's default is 1/√d, the non-local
default is 1). Any SDPA kernel may run; single head, so the head dim is 1.
Inputs are made contiguous first: given strided views (NonLocal2d's transposed
maps), PyTorch's CPU SDPA falls back to its math kernel, which stores the N×M
score matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nonlocal_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    q, k, v = (t.contiguous().unsqueeze(1) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, scale=scale)
    return out.squeeze(1)
