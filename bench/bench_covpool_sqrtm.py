"""covpool_sqrtm (5 iterations): every backend vs reference vs torch.compile(reference) vs the
centring-matrix formulation of the original iSQRT-COV/SAN code, forward and forward+backward."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from bench.common import COMPILED, backend_params, compiled, make_callable, run_benchmark, select_shape
from bench.shapes import COVPOOL_SQRTM_CPU, COVPOOL_SQRTM_GPU, COVPOOL_SQRTM_SMOKE
from srops.ops.covpool.reference import covpool_sqrtm_ref, sqrtm_ns_ref

OP = "covpool_sqrtm"
CENTRING = "centring-matrix"
ITERATIONS = 5
EPS = 1e-5
MAX_CENTRING_BYTES = 2 * 2**30  # Î is B×M×M: skip where it would exceed 2 GB
ALL_SHAPES = sorted(set(COVPOOL_SQRTM_GPU) | set(COVPOOL_SQRTM_CPU) | set(COVPOOL_SQRTM_SMOKE))


def covpool_sqrtm_centring(x: torch.Tensor, iterations: int = ITERATIONS, eps: float = EPS) -> torch.Tensor:
    """The original formulation: Î = (1/M)(I − 11ᵀ/M) materialised as ``[B, M, M]``, Σ = X Î Xᵀ,
    then the same Newton–Schulz square root. x ``[B, C, M]`` → ``[B, C, C]``."""
    b, _, m = x.shape
    i_hat = (torch.eye(m, dtype=x.dtype, device=x.device) - 1.0 / m) / m
    sigma = torch.bmm(torch.bmm(x, i_hat.expand(b, m, m)), x.transpose(1, 2))
    return sqrtm_ns_ref(sigma, iterations, eps)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
@pytest.mark.parametrize(
    "backend",
    backend_params(OP, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    + [pytest.param(CENTRING, id=CENTRING)],
)
def test_covpool_sqrtm(benchmark, device, smoke, backend, shape, mode):
    s = select_shape(shape, COVPOOL_SQRTM_GPU, COVPOOL_SQRTM_CPU, COVPOOL_SQRTM_SMOKE, device, smoke)
    m = s["H"] * s["W"]
    if backend == CENTRING and s["B"] * m * m * 4 > MAX_CENTRING_BYTES:
        pytest.skip(f"{CENTRING}: Î would take {s['B'] * m * m * 4 / 2**30:.0f} GB (B·M² float32)")
    x = torch.randn(s["B"], s["C"], m, device=device, requires_grad=mode == "fwd+bwd")
    if backend == COMPILED:
        fn = compiled(lambda t: covpool_sqrtm_ref(t, ITERATIONS, EPS))
    elif backend == CENTRING:
        fn = covpool_sqrtm_centring
    else:
        fn = lambda t: F.covpool_sqrtm(t, ITERATIONS, EPS, backend=backend)  # noqa: E731
    call = make_callable(fn, (x,), mode)
    run_benchmark(benchmark, call, device, group=f"{OP} {shape} {mode}", backend=backend, shape=shape,
                  mode=mode, dtype=str(x.dtype), iterations=ITERATIONS, **s)
