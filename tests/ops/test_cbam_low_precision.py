"""Fused CBAM in float16/bfloat16 with the default BatchNorm'd spatial gate.

DESIGN's rule: the backend's error against a float64 oracle is at most 2× the reference
backend's own error in the same dtype; and no NaN with a large upstream gradient.
"""
from __future__ import annotations

import copy

import pytest
import torch

from srops import _ext
from srops.nn.cbam import CBAM
from srops.testing import assert_low_precision_close

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")


def _run(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, dtype: torch.dtype):
    m = copy.deepcopy(module).to(dtype)
    xi = x.to(dtype).requires_grad_()
    y = m(xi)
    y.backward(grad.to(dtype))
    return y, xi.grad, {n: p.grad for n, p in m.named_parameters()}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_cbam_low_precision_within_twice_the_reference(dtype):
    torch.manual_seed(0)
    base = CBAM(32, backend="reference")
    x, grad = torch.randn(4, 32, 12, 10), torch.randn(4, 32, 12, 10)
    # the oracle: weights, input and gradient rounded to dtype as the runs below see them, then in float64
    y64, dx64, p64 = _run(copy.deepcopy(base).to(dtype), x.to(dtype), grad.to(dtype), torch.float64)
    y_ref, dx_ref, p_ref = _run(base, x, grad, dtype)
    fused = copy.deepcopy(base)
    for m in fused.modules():
        if hasattr(m, "backend"):
            m.backend = "cpu"
    y, dx, p = _run(fused, x, grad, dtype)
    assert_low_precision_close(y, y_ref, y64, "output")
    assert_low_precision_close(dx, dx_ref, dx64, "x.grad")
    for name in p64:
        assert_low_precision_close(p[name], p_ref[name], p64[name], f"{name}.grad")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_cbam_large_upstream_gradient_has_no_nan(dtype):
    """An upstream gradient of a few hundred: x.grad is finite wherever the reference's is."""
    torch.manual_seed(0)
    base = CBAM(32, backend="reference").to(dtype)
    x, grad = torch.randn(4, 32, 48, 48, dtype=dtype), 500 * torch.randn(4, 32, 48, 48, dtype=dtype)
    finite = {}
    for backend in ("reference", "cpu"):
        module = copy.deepcopy(base)
        for m in module.modules():
            if hasattr(m, "backend"):
                m.backend = backend
        xi = x.clone().requires_grad_()
        module(xi).backward(grad)
        finite[backend] = torch.isfinite(xi.grad)
    assert finite["reference"].all()
    assert finite["cpu"].all(), f"{int((~finite['cpu']).sum())} non-finite entries of x.grad"
