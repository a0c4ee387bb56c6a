"""nonlocal_attention: reference against an independent formula, sdpa against reference, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import srops.functional as F
from srops import BackendUnavailableError
from srops.testing import assert_close

SHAPES = [(1, 5, 3, 8, 8), (2, 17 * 19, 5, 8, 8), (3, 40, 29, 24, 16), (2, 33, 65, 40, 40)]


def numpy_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    out = np.empty((q.shape[0], q.shape[1], v.shape[2]))
    for b in range(q.shape[0]):
        s = q[b] @ k[b].T * scale
        s = np.exp(s - s.max(axis=1, keepdims=True))
        out[b] = (s / s.sum(axis=1, keepdims=True)) @ v[b]
    return out


def make(b: int, n: int, m: int, d: int, dv: int, dtype=torch.float64, grad: bool = False):
    q, k, v = torch.randn(b, n, d, dtype=dtype), torch.randn(b, m, d, dtype=dtype), torch.randn(b, m, dv, dtype=dtype)
    return [t.requires_grad_(grad) for t in (q, k, v)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 0.125])
def test_reference_matches_numpy(shape, scale):
    q, k, v = make(*shape)
    expected = numpy_attention(q.numpy(), k.numpy(), v.numpy(), scale)
    actual = F.nonlocal_attention(q, k, v, scale, backend="reference")
    np.testing.assert_allclose(actual.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sdpa_matches_reference_outputs_and_grads(shape, dtype):
    q, k, v = make(*shape, dtype=dtype, grad=True)
    grad_out = torch.randn(shape[0], shape[1], shape[4], dtype=dtype)
    results = {}
    for backend in ("reference", "sdpa"):
        for t in (q, k, v):
            t.grad = None
        out = F.nonlocal_attention(q, k, v, 1.0, backend=backend)
        out.backward(grad_out)
        results[backend] = (out.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone())
    for name, a, e in zip(("out", "dq", "dk", "dv"), results["sdpa"], results["reference"]):
        assert_close(a, e, name)


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_gradcheck(backend):
    q, k, v = make(2, 7, 5, 8, 3, grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: F.nonlocal_attention(a, b, c, 0.7, backend=backend), (q, k, v))


def test_half_precision_reference_and_sdpa_agree_with_fp32_oracle():
    q, k, v = make(2, 64, 16, 8, 8, dtype=torch.float32)
    oracle = F.nonlocal_attention(q, k, v, backend="reference")
    for dtype in (torch.float16, torch.bfloat16):
        for backend in ("reference", "sdpa"):
            out = F.nonlocal_attention(q.to(dtype), k.to(dtype), v.to(dtype), backend=backend)
            assert out.dtype == dtype
            assert (out.float() - oracle).abs().max() < (2e-2 if dtype == torch.float16 else 1e-1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("autocast", [False, True])
def test_sdpa_on_cpu_computes_half_precision_in_float32_rounded_once(dtype, autocast):
    """bf16/fp16 on CPU: output and every gradient are the float32 result rounded once to the input
    dtype (also inside a bf16 autocast region, which would otherwise recast the float32 copies)."""
    torch.manual_seed(3)
    q, k, v = (t.to(dtype).requires_grad_() for t in make(3, 37, 23, 16, 11, dtype=torch.float32))
    g = torch.randn(3, 37, 11).to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = F.nonlocal_attention(q, k, v, 0.5, backend="sdpa")
    assert out.dtype == dtype
    grads = torch.autograd.grad(out, (q, k, v), g)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    out32 = F.nonlocal_attention(q32, k32, v32, 0.5, backend="sdpa")
    grads32 = torch.autograd.grad(out32, (q32, k32, v32), g.float())
    assert torch.equal(out, out32.to(dtype))
    for name, a, b in zip("qkv", grads, grads32):
        assert a.dtype == dtype, name
        assert torch.equal(a, b.to(dtype)), name


def test_default_dispatch_on_cpu_is_the_cpu_kernel_else_sdpa():
    from srops import _backend, _ext

    q, k, v = make(1, 4, 4, 8, 8)
    want = "cpu" if _ext.has_kernel("nonlocal_attention_fwd", "CPU") else "sdpa"
    assert _backend.select("nonlocal_attention", (q, k, v)).name == want


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((torch.randn(2, 3), torch.randn(2, 3, 8), torch.randn(2, 3, 8)), ValueError, r"'q' must be a 3-D tensor"),
        ((torch.randn(2, 3, 8), torch.randn(2, 4, 7), torch.randn(2, 4, 8)), ValueError, r"'k' must have head dim d"),
        ((torch.randn(2, 3, 8), torch.randn(3, 4, 8), torch.randn(3, 4, 8)), ValueError, r"'k' must have batch size"),
        ((torch.randn(2, 3, 8), torch.randn(2, 4, 8), torch.randn(2, 5, 8)), ValueError, r"'v' must have key count"),
        ((torch.randn(0, 3, 8), torch.randn(0, 4, 8), torch.randn(0, 4, 8)), ValueError, r"'q' must be non-empty"),
        ((torch.ones(2, 3, 8, dtype=torch.int64),) * 3, TypeError, r"'q' must have dtype float16"),
        ((torch.randn(2, 3, 8), torch.randn(2, 4, 8, dtype=torch.float64), torch.randn(2, 4, 8)), TypeError,
         r"'k' must have dtype torch.float32 like 'q'"),
        (("q", torch.randn(2, 4, 8), torch.randn(2, 4, 8)), TypeError, r"'q' must be a torch.Tensor"),
    ],
)
def test_bad_input(args, exc, match):
    with pytest.raises(exc, match=r"srops\.nonlocal_attention: " + match):
        F.nonlocal_attention(*args)


def test_bad_scale_and_backend_names():
    q, k, v = make(1, 4, 4, 8, 8)
    with pytest.raises(ValueError, match="'scale' must be a finite float"):
        F.nonlocal_attention(q, k, v, float("nan"))
    with pytest.raises(ValueError, match="backend must be one of"):
        F.nonlocal_attention(q, k, v, backend="fastest")
    with pytest.raises(BackendUnavailableError, match="'cuda'.*not implemented for this op"):
        F.nonlocal_attention(q, k, v, backend="cuda")


def test_sdpa_on_strided_views_does_not_store_the_score_matrix():
    from srops.profiling import peak_memory_mb

    n, m, d = 4096, 1024, 32
    # the layout NonLocal2d produces: [B, d, N] maps viewed as [B, N, d]
    q = torch.randn(1, d, n).transpose(1, 2)
    k = torch.randn(1, d, m).transpose(1, 2)
    scores_mb = n * m * 4 / 2**20
    ref_mb = peak_memory_mb(lambda: F.nonlocal_attention(q, k, k, backend="reference"), "cpu")
    sdpa_mb = peak_memory_mb(lambda: F.nonlocal_attention(q, k, k, backend="sdpa"), "cpu")
    assert ref_mb >= scores_mb  # the measurement sees the score matrix when there is one
    assert sdpa_mb < scores_mb / 4
