"""sqrtm_ns / covpool_sqrtm reference: convergence to scipy's sqrtm, degenerate inputs, gradients."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import srops.functional as F
from srops.testing import assert_close, assert_close_to_oracle, assert_decreasing_above, eps, ulp_floor


def spd(b: int, c: int, cond: float = 10.0, dtype=torch.float64) -> torch.Tensor:
    """Random SPD matrices with eigenvalues spread over [1, cond]."""
    q, _ = torch.linalg.qr(torch.randn(b, c, c, dtype=torch.float64))
    ev = torch.linspace(1.0, cond, c, dtype=torch.float64).expand(b, c)
    return (q @ torch.diag_embed(ev) @ q.transpose(1, 2)).to(dtype)


TINY = 1e-300  # eps must be > 0; this one leaves any float64 trace of order 1 unchanged


@pytest.mark.parametrize("c", [3, 17, 64])
def test_converges_to_scipy_sqrtm(c):
    scipy_linalg = pytest.importorskip("scipy.linalg", reason="scipy is a test dependency (requirements.txt)")
    a = spd(2, c)
    errors = []
    for iterations in (3, 5, 8, 15):
        out = F.sqrtm_ns(a, iterations, eps=TINY)
        err = max(
            np.linalg.norm(out[b].numpy() - scipy_linalg.sqrtm(a[b].numpy()).real) / np.linalg.norm(out[b].numpy())
            for b in range(2)
        )
        errors.append(err)
    assert errors[-1] <= 1e-6, errors
    # relative Frobenius errors: round-off of both methods is a few eps · κ · √c, under 100 ulp · κ
    assert_decreasing_above(errors, 100 * eps(torch.float64) * 10.0, "relative error per iteration count")


def test_eps_is_added_to_the_trace():
    a = spd(1, 4)
    t = a.diagonal(dim1=-2, dim2=-1).sum()
    # with eps, the result is sqrtm of a/(t+eps)·t... only through normalisation: check against eps≈0 of a scaled copy
    out = F.sqrtm_ns(a, 15, eps=0.5)
    expected = F.sqrtm_ns(a * t / (t + 0.5), 15, eps=TINY) * ((t + 0.5) / t).sqrt()
    assert_close(out, expected, "out")


def test_one_iteration_formula():
    a = spd(2, 5)
    t = a.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None]
    A = a / t
    expected = 0.5 * A @ (3 * torch.eye(5, dtype=a.dtype) - A) * t.sqrt()
    assert_close(F.sqrtm_ns(a, 1, eps=TINY), expected, "out")


@pytest.mark.parametrize("iterations", [1, 2, 5])
def test_zero_and_rank_deficient_inputs_are_finite(iterations):
    x = torch.zeros(2, 8, 5, 5, dtype=torch.float32, requires_grad=True)
    out = F.covpool_sqrtm(x, iterations)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    assert out.abs().max() == 0
    # rank 1: every channel a multiple of one map
    base = torch.randn(1, 1, 6, 6)
    x2 = (torch.arange(1, 9, dtype=torch.float32)[None, :, None, None] * base).requires_grad_()
    out2 = F.covpool_sqrtm(x2, iterations)
    out2.sum().backward()
    assert torch.isfinite(out2).all() and torch.isfinite(x2.grad).all()


def test_gradcheck_sqrtm_symmetrised():
    a = spd(2, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: F.sqrtm_ns((s + s.transpose(1, 2)) / 2, 5), (a,))


@pytest.mark.parametrize("row_mean", [False, True])
def test_gradcheck_covpool_sqrtm(row_mean):
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.covpool_sqrtm(t, 5, row_mean=row_mean), (x,))


def test_row_mean_is_soca_statistic():
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    full = F.covpool_sqrtm(x, 5)
    assert_close(F.covpool_sqrtm(x, 5, row_mean=True), full.mean(dim=1), "row mean")
    assert_close(full, F.sqrtm_ns(F.covpool(x, backend="reference"), 5), "full")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_compute_in_float32(dtype):
    x = torch.randn(2, 8, 6, 6)
    out = F.covpool_sqrtm(x.to(dtype), 5)
    assert out.dtype == dtype
    oracle = F.covpool_sqrtm(x.to(dtype).double(), 5, backend="reference")
    same_dtype = F.covpool_sqrtm(x.to(dtype), 5, backend="reference")
    assert_close_to_oracle(out, same_dtype, oracle, "out", floor=ulp_floor(dtype, oracle))


def test_bad_input():
    with pytest.raises(ValueError, match=r"srops\.sqrtm_ns: 'a' must have square matrices"):
        F.sqrtm_ns(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"srops\.sqrtm_ns: 'iterations' must be an int in \[1, 256\], got 0"):
        F.sqrtm_ns(torch.eye(3)[None], 0)
    with pytest.raises(TypeError, match=r"srops\.covpool_sqrtm: 'iterations' must be an int"):
        F.covpool_sqrtm(torch.randn(1, 3, 4, 4), 2.5)
    with pytest.raises(ValueError, match=r"srops\.covpool_sqrtm: 'x' must be a 3-D or 4-D tensor"):
        F.covpool_sqrtm(torch.randn(3, 4))
