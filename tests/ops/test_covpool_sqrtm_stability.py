"""covpool_sqrtm at many Newton–Schulz iterations, on full-rank and rank-deficient covariances.

The oracle is the exact-arithmetic iterate: the scalar Newton–Schulz recurrence applied to each
eigenvalue of A = Σ/t (Σ from float64 x), Y_N = V diag(y_N(λ)) Vᵀ, √t·Y_N. Every backend is held to
DESIGN §6: its error against the oracle may be at most 2× the reference's own error in that dtype,
plus a floor (100 ulp of the dtype) near zero.

For a rank-deficient Σ the coupled iteration is unstable in floating point: the rounding that
leaves ±ε eigenvalues in Σ's null space is amplified at every step (the scalar map w ↦ w(3 − w)²/4
of Z·Y has an unstable fixed point at 0, slope 2.25), so every implementation, the reference included,
loses accuracy after some tens of steps (float32: inf/NaN from about 25, float64 from about 50). The rule is asserted while the reference's own error is below 1e-2 (the
regime where the result means anything); beyond it the test only records the step.
"""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import _ext

CPU_BACKENDS = ["cpu"] if _ext.HAS_EXT else []
EPS = 1e-5
FLOOR = {torch.float32: 100 * torch.finfo(torch.float32).eps, torch.float64: 100 * torch.finfo(torch.float64).eps}
MEANINGFUL = 1e-2  # the reference's own relative error above which the comparison stops


def ns_oracle(x: torch.Tensor, iterations: int, eps: float = EPS) -> torch.Tensor:
    """Exact Newton–Schulz iterate √t·Y_N of x ``[B, C, M]`` by eigendecomposition, float64 ``[B, C, C]``."""
    xd = x.double()
    xc = xd - xd.mean(2, keepdim=True)
    sigma = xc @ xc.transpose(1, 2) / xd.shape[2]
    t = sigma.diagonal(dim1=1, dim2=2).sum(-1) + eps
    lam, vec = torch.linalg.eigh(sigma / t[:, None, None])
    lam = lam.clamp_min(0)  # exactly PSD; the negative ones are eigh's rounding
    tm = 0.5 * (3 - lam)
    y, z = lam * tm, tm
    for _ in range(iterations - 1):
        tm = 0.5 * (3 - z * y)
        y, z = y * tm, tm * z
    return (vec * y[:, None, :]) @ vec.transpose(1, 2) * t.sqrt()[:, None, None]


def rel_err(got: torch.Tensor, oracle: torch.Tensor) -> float:
    return float((got.double() - oracle).norm() / oracle.norm())


def inputs(kind: str, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    if kind == "rank-deficient":  # H·W = 25 < C = 64: rank 24
        return torch.randn(2, 64, 25, generator=g).to(dtype)
    return torch.randn(2, 16, 400, generator=g).to(dtype)  # full rank, well conditioned


def check_sweep(backend: str, kind: str, dtype: torch.dtype, steps) -> None:
    x = inputs(kind, dtype)
    for n in steps:
        oracle = ns_oracle(x, n)
        ref = rel_err(F.covpool_sqrtm(x, n, EPS, backend="reference"), oracle)
        if not ref <= MEANINGFUL:
            continue
        got = rel_err(F.covpool_sqrtm(x, n, EPS, backend=backend), oracle)
        assert got <= 2 * ref + FLOOR[dtype], f"{backend} {kind} {dtype} N={n}: error {got:.3e} > 2 × reference {ref:.3e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["rank-deficient", "full-rank"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_iterations_5_to_30_within_twice_the_reference(backend, kind, dtype):
    check_sweep(backend, kind, dtype, range(5, 31))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["rank-deficient", "full-rank"])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_up_to_256_iterations_within_twice_the_reference(backend, kind, dtype):
    check_sweep(backend, kind, dtype, (40, 64, 128, 256))


@pytest.mark.parametrize("n", [5, 12, 15, 20])
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_rank_deficient_gradient_within_twice_the_reference(backend, n):
    """dx in float32 against the float64 reference (accurate to ~1e-11 at these steps)."""
    x0 = inputs("rank-deficient", torch.float32)
    grad = torch.randn(2, 64, 64, generator=torch.Generator().manual_seed(3))
    grads = {}
    for name, x, b in (("oracle", x0.double(), "reference"), ("ref", x0, "reference"), ("got", x0, backend)):
        x = x.clone().requires_grad_(True)
        (grads[name],) = torch.autograd.grad(F.covpool_sqrtm(x, n, EPS, backend=b), x, grad.to(x.dtype))
    ref, got = rel_err(grads["ref"], grads["oracle"]), rel_err(grads["got"], grads["oracle"])
    assert ref <= MEANINGFUL, f"reference dx error {ref:.3e} at N={n}"
    assert got <= 2 * ref + FLOOR[torch.float32], f"{backend} dx N={n}: error {got:.3e} > 2 × reference {ref:.3e}"
