"""Non-local attention through ``torch.nn.functional.scaled_dot_product_attention``.

The scale is always passed explicitly (SDPA's default is 1/√d, the non-local
default is 1). Any SDPA kernel may run; single head, so the head dim is 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nonlocal_attention_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=scale)
    return out.squeeze(1)
