"""eps = 0 (SAN's and fast-MPN-COV's statistic): accepted everywhere, and a zero trace gives a defined result.

With eps = 0 a sample whose features are all constant has t = tr Σ = 0; its result is defined as exactly
zero (Σ = 0, and √0 = 0) with a zero gradient, on every backend, instead of 0/0 = NaN.
"""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import SecondOrderAttention, _ext
from srops.ops.covpool.reference import covpool_sqrtm_ref
from tests.nn.test_compat import san_newton_schulz

BACKENDS = ["reference"] + (["cpu"] if _ext.HAS_EXT else [])


def constant_and_random(dtype: torch.dtype) -> torch.Tensor:
    """Sample 0 constant per channel (trace 0), sample 1 random: [2, 6, 5, 7]."""
    x = torch.randn(2, 6, 5, 7, dtype=dtype)
    x[0] = torch.arange(6, dtype=dtype)[:, None, None]
    return x


@pytest.mark.parametrize("row_mean", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_trace_gives_zero_result_and_zero_gradient(backend, dtype, row_mean):
    x = constant_and_random(dtype).requires_grad_(True)
    y = F.covpool_sqrtm(x, 5, 0.0, row_mean, backend=backend)
    (dx,) = torch.autograd.grad(y, x, torch.randn_like(y))
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    assert y[0].abs().max() == 0 and dx[0].abs().max() == 0
    assert y[1].abs().max() > 0  # the other sample is unaffected
    y_ref = covpool_sqrtm_ref(x.detach().flatten(2), 5, 0.0, row_mean)
    torch.testing.assert_close(y.detach(), y_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_eps_zero_matches_the_formula_without_eps(backend):
    """t = tr Σ exactly: the result equals √(tr Σ)·Y_N(Σ / tr Σ) computed by hand in float64."""
    x = torch.randn(2, 9, 40, dtype=torch.float64)
    xc = x - x.mean(2, keepdim=True)
    sigma = xc @ xc.transpose(1, 2) / 40
    tr = sigma.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    y = san_newton_schulz(sigma, tr)
    torch.testing.assert_close(F.covpool_sqrtm(x, 5, 0.0, backend=backend), y * tr.sqrt())


def test_sqrtm_ns_zero_matrix_with_eps_zero():
    a = torch.zeros(2, 4, 4, dtype=torch.float64)
    a[1] = torch.eye(4, dtype=torch.float64) * 4
    a.requires_grad_(True)
    y = F.sqrtm_ns(a, 20, 0.0)
    (da,) = torch.autograd.grad(y, a, torch.ones_like(y))
    assert y[0].abs().max() == 0 and da[0].abs().max() == 0 and torch.isfinite(da).all()
    torch.testing.assert_close(y[1], 2 * torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_module_accepts_eps_zero(backend):
    m = SecondOrderAttention(6, reduction=2, eps=0.0, backend=backend).double()
    x = constant_and_random(torch.float64).requires_grad_(True)
    m(x).sum().backward()
    assert m.eps == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.skipif(not _ext.HAS_EXT, reason="srops._C not built")
def test_cpp_op_accepts_eps_zero():
    x = torch.ones(1, 3, 5, dtype=torch.float64)
    out, _, _, _, trace = torch.ops.srops.covpool_sqrtm_fwd(x, 3, 0.0, False)
    assert trace.item() == 0 and out.abs().max() == 0
