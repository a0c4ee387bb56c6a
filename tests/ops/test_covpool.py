"""covpool: reference vs numpy's biased covariance; the C++ CPU kernel vs reference; opcheck; errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import srops.functional as F
from srops import BackendUnavailableError, _ext
from srops.testing import assert_close, assert_close_to_oracle, float64_tolerance, ulp_floor
from tests.conftest import requires_ext

SHAPES = [(1, 1, 1, 2), (2, 3, 5, 7), (3, 17, 4, 9), (2, 64, 13, 11), (1, 130, 3, 3)]


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_matches_numpy_biased_covariance(shape):
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 5
    out = F.covpool(x, backend="reference")
    # float64 rule: sums of M = H·W products of centred values of scale max|x|; the offset 5 against the
    # spread 3 costs κ = 1 + (5 / 3)² in the centring
    tol = float64_tolerance(shape[2] * shape[3], cond=1 + (5 / 3) ** 2, scale=float(x.abs().max()) ** 2)
    for b in range(shape[0]):
        expected = np.cov(x[b].reshape(shape[1], -1).numpy(), bias=True).reshape(shape[1], shape[1])
        np.testing.assert_allclose(out[b].numpy(), expected, **tol)


def test_accepts_bcm_layout():
    x = torch.randn(2, 5, 6, 7, dtype=torch.float64)
    assert torch.equal(F.covpool(x, backend="reference"), F.covpool(x.flatten(2), backend="reference"))


@requires_ext
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cpu_kernel_matches_reference(shape, dtype):
    x = (torch.randn(*shape, dtype=dtype) * 2 + 1).requires_grad_()
    grad = torch.randn(shape[0], shape[1], shape[1], dtype=dtype)
    outs = {}
    for backend in ("reference", "cpu"):
        x.grad = None
        out = F.covpool(x, backend=backend)
        out.backward(grad)
        outs[backend] = (out.detach(), x.grad.clone())
    if dtype == torch.float64:
        assert_close(outs["cpu"][0], outs["reference"][0], "out")
        assert_close(outs["cpu"][1], outs["reference"][1], "dx")
        return
    x64 = x.detach().double().requires_grad_()  # float32: both against the reference in float64
    out64 = F.covpool(x64, backend="reference")
    out64.backward(grad.double())
    for i, (name, oracle) in enumerate((("out", out64.detach()), ("dx", x64.grad))):
        assert_close_to_oracle(outs["cpu"][i], outs["reference"][i], oracle, name, floor=ulp_floor(dtype, oracle))


@requires_ext
def test_cpu_kernel_large_offset_stays_accurate():
    # centred accumulation: a large mean must not swamp the variance
    x = torch.randn(2, 4, 5000, dtype=torch.float32) + 1000.0
    expected = F.covpool(x.double(), backend="reference")
    # the reference centres too: it is as accurate as the kernel must be; the floor is 8 ulp of the
    # covariance's scale, far below the 1e-4 × 1000² an uncentred float32 sum would lose
    assert_close_to_oracle(F.covpool(x, backend="cpu"), F.covpool(x, backend="reference"), expected, "out",
                           floor=ulp_floor(torch.float32, expected))


@requires_ext
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_kernel_half_inputs_compute_in_float32(dtype):
    x = torch.randn(2, 6, 5, 5).to(dtype)
    out = F.covpool(x, backend="cpu")
    assert out.dtype == dtype
    oracle = F.covpool(x.double(), backend="reference")
    assert_close_to_oracle(out, F.covpool(x, backend="reference"), oracle, "out", floor=ulp_floor(dtype, oracle))


@pytest.mark.parametrize("backend", ["reference", pytest.param("cpu", marks=requires_ext)])
def test_gradcheck(backend):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: F.covpool(t, backend=backend), (x,))


@requires_ext
def test_opcheck_registered_ops():
    x = torch.randn(2, 5, 17, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.srops.covpool_fwd.default, (x,))
    torch.library.opcheck(torch.ops.srops.covpool_bwd.default, (torch.randn(2, 5, 5, dtype=torch.float64), x.detach()))


@pytest.mark.compile
@requires_ext
def test_compile_fullgraph():
    x = torch.randn(2, 5, 4, 4)
    fn = torch.compile(lambda t: F.covpool(t, backend="cpu"), fullgraph=True)
    oracle = F.covpool(x.double(), backend="reference")
    assert_close_to_oracle(fn(x), F.covpool(x, backend="reference"), oracle, "out", floor=ulp_floor(x.dtype, oracle))


@requires_ext
@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: torch.ops.srops.covpool_fwd(torch.randn(3, 4)), ValueError, r"x must be a 3-D tensor"),
        (lambda: torch.ops.srops.covpool_fwd(torch.randn(2, 3, 4).half()), TypeError, r"x must be float32 or float64"),
        (lambda: torch.ops.srops.covpool_fwd(torch.randn(0, 3, 4)), ValueError, r"x must be non-empty"),
        (lambda: torch.ops.srops.covpool_bwd(torch.randn(2, 3, 4), torch.randn(2, 3, 4)), ValueError,
         r"grad must have shape \[2, 3, 3\]"),
        (lambda: torch.ops.srops.covpool_bwd(torch.randn(2, 3, 3).double(), torch.randn(2, 3, 4)), TypeError,
         r"grad must have dtype Float"),
    ],
)
def test_cpp_checks_raise_python_errors(call, exc, match):
    with pytest.raises(exc, match=r"srops::covpool_(fwd|bwd): " + match):
        call()


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (torch.randn(3, 4), ValueError, r"'x' must be a 3-D or 4-D tensor"),
        (torch.randn(0, 3, 4, 4), ValueError, r"'x' must be non-empty"),
        (torch.ones(2, 3, 4, 4, dtype=torch.int32), TypeError, r"'x' must have dtype"),
        ([[1.0]], TypeError, r"'x' must be a torch.Tensor"),
    ],
)
def test_frontend_bad_input(x, exc, match):
    with pytest.raises(exc, match=r"srops\.covpool: " + match):
        F.covpool(x)


def test_unavailable_backend_raises_with_reason():
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(BackendUnavailableError, match=r"backend 'cuda'.*not implemented|cannot run"):
        F.covpool(x, backend="cuda")
    if not _ext.HAS_EXT:
        with pytest.raises(BackendUnavailableError, match="cannot run here"):
            F.covpool(x, backend="cpu")
