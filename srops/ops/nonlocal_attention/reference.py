"""Pure-PyTorch non-local attention: the oracle and the last-resort fallback.

Materialises the [B, N, M] score matrix, so memory is O(B·N·M).
"""
from __future__ import annotations

import torch


def nonlocal_attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v for q [B, N, d], k [B, M, d], v [B, M, dv] → [B, N, dv], in the input dtype."""
    scores = torch.bmm(q, k.transpose(1, 2)) * scale
    return torch.bmm(torch.softmax(scores, dim=-1), v)
