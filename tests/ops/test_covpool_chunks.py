"""The CPU covariance code centres x in cache-sized chunks and adds the chunks' Gram matrices, by one of two
plans: by sample (at least as many samples as threads, or one task anyway: chunks of one sample of
L = max(256, 2^18 / C rounded down to 64) columns, the Gram's upper part in two GEMMs from C = 64 rows) or by
column chunk across the batch (L = max(256, 2^18 / (B·C)), one partial sum per task). Each plan with several
chunks and a short last one, at 1 and 2 threads, odd channel counts on both sides of the 64-row split, checked
against a float64 oracle (DESIGN §6: at most 2× the reference's float32 error, plus a floor) and in float64
against the reference."""
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
# (B, C, M) at 2 threads: by column chunk (B = 1 < 2 threads, L = 4096: 2 full chunks and 77 columns), by sample
# with L = 3264 (C = 80: 2 chunks and 5 columns), by sample with L = 4096 in one chunk and C = 65 (halves of 32
# and 33 rows), by sample with C = 16 (one full product); at 1 thread each runs by sample.
SHAPES = [(1, 64, 2 * 4096 + 77), (2, 80, 2 * 3264 + 5), (3, 65, 4096), (4, 16, 2 * 1024 + 77)]


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(OPS))
def test_chunked_forward_float32_within_twice_the_reference(op, shape, threads):
    x = 5 + torch.randn(*shape, generator=torch.Generator().manual_seed(11))  # an offset: centring matters
    oracle = OPS[op](x.double(), "reference")
    err_ref = _max_rel(OPS[op](x, "reference"), oracle)
    err_cpu = _max_rel(OPS[op](x, "cpu"), oracle)
    assert err_cpu <= 2 * err_ref + 1e-6, f"{op} {shape}: error {err_cpu:.3e} > 2 × reference {err_ref:.3e}"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", list(OPS))
def test_chunked_forward_and_backward_float64(op, shape, threads):
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    outs = []
    for backend in ("cpu", "reference"):
        xx = x.clone().requires_grad_(True)
        y = OPS[op](xx, backend)
        y.backward(torch.ones_like(y))
        outs.append((y.detach(), xx.grad))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])


@pytest.mark.parametrize("batch", [1, 4])
def test_constant_rows_give_an_exactly_zero_covariance_across_chunks(batch, threads):
    x = torch.full((batch, 64, 2 * 4096 + 77), 0.1) * torch.arange(1, 65, dtype=torch.float32)[None, :, None]
    assert F.covpool(x, backend="cpu").abs().max().item() == 0.0


@pytest.mark.parametrize("shape", [(1, 64, 2 * 4096 + 77), (4, 64, 2 * 1024 + 77)])
@pytest.mark.parametrize("op", list(OPS))
def test_inference_mode_with_worker_threads(op, shape, threads):
    """Under torch.inference_mode() (how srops-upscale runs networks) the tensors the op makes are inference
    tensors; its worker threads must write them under the caller's mode, not fail as 'in-place update to
    inference tensor outside InferenceMode'."""
    x = 5 + torch.randn(*shape, generator=torch.Generator().manual_seed(13))
    with torch.inference_mode():
        got = OPS[op](x, "cpu")
    oracle = OPS[op](x.double(), "reference")
    assert got.shape == oracle.shape
    err_ref, err_cpu = _max_rel(OPS[op](x, "reference"), oracle), _max_rel(got, oracle)
    assert err_cpu <= 2 * err_ref + 1e-6, f"{op} {shape}: error {err_cpu:.3e} > 2 × reference {err_ref:.3e}"
