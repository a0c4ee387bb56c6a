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
    pooled, argmax = ops.cbam_spatial_pool(x, None)
    assert argmax.dtype == torch.int64
    assert int(argmax) == 2**24 + 1
    grad = torch.zeros(1, 2, 1, 1)
    grad[0, 0] = 1.0  # the max channel's gradient only
    dx, _ = ops.cbam_spatial_pool_backward(grad, x, None, argmax)
    assert dx[0, 2**24 + 1, 0, 0] == 1.0 and dx.sum() == 1.0
