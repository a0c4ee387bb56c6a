"""The CPU covariance forward centres x in column chunks of L = max(256, 2^18 / (B·C) rounded down to 64)
and adds the chunks' Gram matrices: several chunks and a short last one, checked against a float64 oracle
(DESIGN §6: at most 2× the reference's float32 error, plus a floor) and in float64 against the reference."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from srops import _ext

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")

OPS = {
    "covpool": lambda x, backend: F.covpool(x, backend=backend),
    "covpool_sqrtm": lambda x, backend: F.covpool_sqrtm(x, 5, 1e-5, backend=backend),
    "covpool_sqrtm_row_mean": lambda x, backend: F.covpool_sqrtm(x, 3, 0.0, row_mean=True, backend=backend),
}
# (B, C, M): L = 1024 with 2 full chunks and 77 columns; L = 256 with 5 chunks and 3 columns; one chunk of 4096
SHAPES = [(4, 64, 2 * 1024 + 77), (16, 80, 5 * 256 + 3), (1, 64, 4096)]


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(OPS))
def test_chunked_forward_float32_within_twice_the_reference(op, shape):
    x = 5 + torch.randn(*shape, generator=torch.Generator().manual_seed(11))  # an offset: centring matters
    oracle = OPS[op](x.double(), "reference")
    err_ref = _max_rel(OPS[op](x, "reference"), oracle)
    err_cpu = _max_rel(OPS[op](x, "cpu"), oracle)
    assert err_cpu <= 2 * err_ref + 1e-6, f"{op} {shape}: error {err_cpu:.3e} > 2 × reference {err_ref:.3e}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(OPS))
def test_chunked_forward_and_backward_float64(op, shape):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    outs = []
    for backend in ("cpu", "reference"):
        xx = x.clone().requires_grad_(True)
        y = OPS[op](xx, backend)
        y.backward(torch.ones_like(y))
        outs.append((y.detach(), xx.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


def test_constant_rows_give_an_exactly_zero_covariance_across_chunks():
    x = torch.full((4, 64, 2 * 1024 + 77), 0.1) * torch.arange(1, 65, dtype=torch.float32)[None, :, None]
    assert F.covpool(x, backend="cpu").abs().max().item() == 0.0
