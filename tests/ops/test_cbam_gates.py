"""Fused CBAM edge cases: integer argmax channels past float32's exact range, gate output shapes."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import _ext

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")
ops = torch.ops.srops


def test_spatial_pool_argmax_exact_above_2_pow_24() -> None:
    """Channel 2**24 + 1 is not a float32: the argmax (and the max-gradient) must still land on it."""
    C = 2**24 + 3
    x = torch.zeros(1, C, 1, 1)
    x[0, 2**24 + 1] = 1.0
    pooled, argmax = ops.cbam_spatial_pool_fwd(x, None)
    assert argmax.dtype == torch.int64
    assert int(argmax) == 2**24 + 1
    grad = torch.zeros(1, 2, 1, 1)
    grad[0, 0] = 1.0  # the max channel's gradient only
    dx, _ = ops.cbam_spatial_pool_bwd(grad, x, None, argmax)
    assert dx[0, 2**24 + 1, 0, 0] == 1.0 and dx.sum() == 1.0


BACKENDS = ["reference", "cpu"]


def _conv(out_channels: int):
    weight = torch.randn(out_channels, 2, 3, 3)
    return lambda pooled: torch.nn.functional.conv2d(pooled, weight.to(pooled.dtype), padding=1)


def _mlp(out_features: int, C: int):
    weight = torch.randn(out_features, C)
    return lambda v: v @ weight.t().to(v.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["spatial_gate", "spatial_attention", "cbam"])
@pytest.mark.parametrize("C", [2, 5])
def test_spatial_conv_with_extra_channels_is_rejected(backend: str, op: str, C: int) -> None:
    """A gate conv returning 2 channels is neither cut to channel 0 nor broadcast (C=2) on any backend."""
    x = torch.randn(2, C, 6, 5)
    args = (x, _mlp(C, C), _conv(2)) if op == "cbam" else (x, _conv(2))
    with pytest.raises(ValueError, match=r"'conv' must return .*\[B, 1, H, W\].*\(2, 2, 6, 5\)"):
        getattr(F, op)(*args, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", ["channel_gate", "channel_attention", "cbam"])
def test_mlp_with_wrong_width_is_rejected(backend: str, op: str) -> None:
    """An MLP returning [B, 1] (which the reference would broadcast) is a clear error on every backend."""
    x = torch.randn(2, 4, 3, 3)
    args = (x, _mlp(1, 4), _conv(1)) if op == "cbam" else (x, _mlp(1, 4))
    with pytest.raises(ValueError, match=r"'mlp' must return .*\[B, C\].*\(2, 1\)"):
        getattr(F, op)(*args, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gate_returning_a_non_tensor_is_rejected(backend: str) -> None:
    x = torch.randn(2, 4, 3, 3)
    with pytest.raises(TypeError, match=r"'conv' must return a torch.Tensor"):
        F.spatial_attention(x, lambda pooled: pooled.tolist(), backend=backend)
