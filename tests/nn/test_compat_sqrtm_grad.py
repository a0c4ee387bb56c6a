"""srops's Newton–Schulz backward is the exact derivative; fast-MPN-COV's transposes it (docs/ops.md §A).

``hand_backward`` is the analytic chain of the iterations written out here; ``transpose=True`` is
fast-MPN-COV's variant, which transposes dA before the pre-normalisation step. For a
non-symmetric upstream gradient only the untransposed chain equals srops's gradient; after
covariance pooling (which only passes dΣ + dΣᵀ on) both give the same input gradient.
"""
from __future__ import annotations

import pytest
import torch

import srops
import srops.functional as F
from srops.testing import assert_close

EPS = 1e-300  # the reference implementations add no eps; eps must be > 0 and this one is a no-op in float64


def spd(b: int, c: int) -> torch.Tensor:
    x = torch.randn(b, c, 3 * c, dtype=torch.float64)
    return x @ x.transpose(1, 2) / (3 * c) + 0.1 * torch.eye(c, dtype=torch.float64)


def hand_backward(sigma: torch.Tensor, grad: torch.Tensor, n: int, transpose: bool) -> torch.Tensor:
    """dL/dΣ of √t · Y_N(Σ / t), t = tr Σ, for the upstream gradient ``grad`` ``[B, C, C]``."""
    eye = torch.eye(sigma.shape[-1], dtype=sigma.dtype).expand_as(sigma)
    t = sigma.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
    a = sigma / t
    ys, zs = [], []
    if n == 1:
        y_n = 0.5 * a @ (3 * eye - a)
    else:
        step = 0.5 * (3 * eye - a)
        ys, zs = [a @ step], [step]
        for _ in range(2, n):
            step = 0.5 * (3 * eye - zs[-1] @ ys[-1])
            ys.append(ys[-1] @ step)
            zs.append(step @ zs[-1])
        y_n = 0.5 * ys[-1] @ (3 * eye - zs[-1] @ ys[-1])
    p = t.sqrt() * grad
    if n == 1:
        da = 0.5 * (p @ (3 * eye - a) - a @ p)
    else:
        y, z = ys[-1], zs[-1]
        dy, dz = 0.5 * (p @ (3 * eye - y @ z) - z @ y @ p), -0.5 * y @ p @ y
        for k in range(n - 3, -1, -1):
            y, z = ys[k], zs[k]
            yz = y @ z
            dy, dz = (0.5 * (dy @ (3 * eye - yz) - z @ dz @ z - z @ y @ dy),
                      0.5 * ((3 * eye - yz) @ dz - y @ dy @ y - dz @ z @ y))
        da = 0.5 * (dy @ (3 * eye - a) - dz - a @ dy)
    if transpose:
        da = da.transpose(1, 2)
    coef = (grad * y_n).sum((1, 2))[:, None, None] / (2 * t.sqrt())
    return da / t + (coef - (da * sigma).sum((1, 2))[:, None, None] / t**2) * eye


def test_sqrtm_ns_gradient_is_the_exact_derivative():
    # no symmetrisation: gradcheck also perturbs Σ off its symmetric subspace
    a = spd(2, 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda s: F.sqrtm_ns(s, 5, eps=EPS), (a,))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_non_symmetric_upstream_gradient_srops_exact_fast_mpn_cov_transposed(n):
    sigma = spd(3, 6).requires_grad_()
    grad = torch.randn(3, 6, 6, dtype=torch.float64)  # non-symmetric
    (ours,) = torch.autograd.grad(F.sqrtm_ns(sigma, n, eps=EPS), sigma, grad)
    exact = hand_backward(sigma.detach(), grad, n, transpose=False)
    mpncov = hand_backward(sigma.detach(), grad, n, transpose=True)
    assert_close(ours, exact)
    assert (ours - mpncov).abs().max() > 1e-3  # fast-MPN-COV's backward differs here ...
    assert_close(ours + ours.transpose(1, 2), mpncov + mpncov.transpose(1, 2))  # ... but not in dΣ + dΣᵀ
    sym = grad + grad.transpose(1, 2)  # and a symmetric upstream gradient makes them equal
    (ours_sym,) = torch.autograd.grad(F.sqrtm_ns(sigma, n, eps=EPS), sigma, sym)
    assert_close(ours_sym, hand_backward(sigma.detach(), sym, n, transpose=True))


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_after_covariance_pooling_both_backwards_agree(backend):
    status = srops.backends()["covpool_sqrtm"][backend]["cpu"]
    if status != "ok":
        pytest.skip(f"covpool_sqrtm {backend}: {status}")
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 5, 5, dtype=torch.float64)  # non-symmetric gradient of Σ^½
    (ours,) = torch.autograd.grad(F.covpool_sqrtm(x, 5, eps=EPS, backend=backend), x, grad)
    X = x.detach().reshape(2, 5, -1)
    xc = X - X.mean(dim=2, keepdim=True)
    sigma = xc @ xc.transpose(1, 2) / X.shape[2]
    d_sigma = hand_backward(sigma, grad, 5, transpose=True)  # fast-MPN-COV's chain
    mpncov = ((d_sigma + d_sigma.transpose(1, 2)) @ xc / X.shape[2]).reshape_as(x)
    assert_close(ours, mpncov)
