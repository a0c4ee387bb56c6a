"""Pure-PyTorch CBAM (official semantics) and RCAN channel attention.

Channel gate: c = σ(Σ_p mlp(pool_p(x))) over the pools ``("avg", "max")``
(RCAN: ``("avg",)``), each pooled ``[B, C]`` vector through the *same* MLP
separately. Spatial gate: s = σ(conv(cat[max_c, mean_c])) on the map it is
applied to. CBAM is x·c then ·s, with s computed on x·c.

Ties in a max pooling: the gradient goes wholly to the first maximal element in
memory order (the lowest index), as ``torch.max(dim)`` does.
"""
from __future__ import annotations

import functools
import operator
from typing import Callable, Sequence

import torch

from srops._checks import check_result

Fn = Callable[[torch.Tensor], torch.Tensor]


def mlp_logits(mlp: Fn, v: torch.Tensor) -> torch.Tensor:
    """``mlp`` on one pooled ``[B, C]`` vector, checked to return ``[B, C]`` (any backend)."""
    return check_result("channel_gate", "mlp", mlp(v), v.shape, "[B, C]")


def conv_logits(conv: Fn, pooled: torch.Tensor) -> torch.Tensor:
    """``conv`` on the pooled ``[B, 2, H, W]`` map, checked to return ``[B, 1, H, W]`` (any backend)."""
    B, _, H, W = pooled.shape
    return check_result("spatial_gate", "conv", conv(pooled), (B, 1, H, W), "[B, 1, H, W]")


def channel_pool(x: torch.Tensor, pool: Sequence[str]) -> list[torch.Tensor]:
    """Per-channel statistics of x ``[B, C, H, W]``: one ``[B, C]`` tensor per pool type."""
    flat = x.flatten(2)
    stats = {"avg": lambda: flat.mean(dim=2), "max": lambda: flat.max(dim=2).values}
    return [stats[p]() for p in pool]


def spatial_pool(x: torch.Tensor) -> torch.Tensor:
    """``[B, 2, H, W]``: max over channels, then mean over channels (the official order)."""
    return torch.cat([x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)], dim=1)


def channel_gate_ref(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    """c = σ(Σ_p mlp(pool_p(x))) as ``[B, C, 1, 1]``."""
    logits = functools.reduce(operator.add, (mlp_logits(mlp, s) for s in channel_pool(x, pool)))
    return torch.sigmoid(logits)[:, :, None, None]


def spatial_gate_ref(x: torch.Tensor, conv: Fn) -> torch.Tensor:
    """s = σ(conv(cat[max_c x, mean_c x])) as ``[B, 1, H, W]``."""
    return torch.sigmoid(conv_logits(conv, spatial_pool(x)))


def channel_attention_ref(x: torch.Tensor, mlp: Fn, pool: Sequence[str]) -> torch.Tensor:
    return x * channel_gate_ref(x, mlp, pool)


def spatial_attention_ref(x: torch.Tensor, conv: Fn) -> torch.Tensor:
    return x * spatial_gate_ref(x, conv)


def cbam_ref(x: torch.Tensor, mlp: Fn, conv: Fn, pool: Sequence[str]) -> torch.Tensor:
    xc = channel_attention_ref(x, mlp, pool)
    return xc * spatial_gate_ref(xc, conv)
