"""The covariance ops' backward centres X before the product: dx = (G+Gᵀ)(X−μ1ᵀ)/M, not GX − (Gμ)1ᵀ,
on the CPU kernels and the CUDA ones (GPU-marked)."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import _ext

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")

OPS = {
    "covpool": lambda x, backend: F.covpool(x, backend=backend),
    "covpool_sqrtm": lambda x, backend: F.covpool_sqrtm(x, 5, 1e-5, backend=backend),
    "covpool_sqrtm_row_mean": lambda x, backend: F.covpool_sqrtm(x, 3, 1e-5, row_mean=True, backend=backend),
}
BACKENDS = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _dx(op: str, x: torch.Tensor, backend: str, grad: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_()
    y = OPS[op](x, backend)
    grad = torch.randn_like(y) if grad is None else grad.to(y.dtype)
    y.backward(grad)
    return x.grad, grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("C,M", [(8, 300), (70, 1000), (200, 40)])
def test_constant_map_gives_exactly_zero_dx(op, C, M, backend):
    """Constant rows: X − μ1ᵀ = 0 exactly, so dx = 0 exactly whatever the upstream gradient."""
    x = torch.full((2, C, M), 3.7) + torch.arange(C, dtype=torch.float32)[None, :, None] * 11.3
    dx, _ = _dx(op, x.to(backend), backend)
    assert dx.abs().max().item() == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op", list(OPS))
def test_large_mean_relative_error_within_twice_the_reference(op, backend):
    """mean/std = 1e3 in float32: error against a float64 oracle at most 2× the reference's float32 error."""
    x64 = (1e3 + torch.randn(2, 16, 700, dtype=torch.float64)).to(backend)
    dx_oracle, grad = _dx(op, x64, "reference")
    dx_ref, _ = _dx(op, x64.float(), "reference", grad)
    dx_op, _ = _dx(op, x64.float(), backend, grad)
    scale = dx_oracle.abs().max().item()
    err_ref = (dx_ref.double() - dx_oracle).abs().max().item() / scale
    err_op = (dx_op.double() - dx_oracle).abs().max().item() / scale
    assert err_op <= 2 * err_ref + 1e-7, f"{backend} relative error {err_op:.3e} > 2 × reference's {err_ref:.3e}"
