"""covpool_sqrtm: compiled CPU/CUDA kernels vs the reference, convergence, edge cases, opcheck, errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import srops.functional as F
from srops import _backend, _ext
from srops.nn.second_order import SecondOrderAttention
from srops.ops.covpool.reference import covpool_ref, covpool_sqrtm_ref
from srops.testing import (
    assert_close, assert_close_to_oracle, assert_decreasing_above, assert_low_precision_close, eps, ulp_floor,
)
from tests.conftest import requires_ext

pytestmark = requires_ext
FWD = torch.ops.srops.covpool_sqrtm_fwd if _ext.HAS_EXT else None
BWD = torch.ops.srops.covpool_sqrtm_bwd if _ext.HAS_EXT else None
EPS = 1e-5


def _run(x: torch.Tensor, iterations: int, row_mean: bool, backend: str, grad: torch.Tensor | None = None):
    """Output and dx of covpool_sqrtm on ``backend`` for a fixed output gradient."""
    x = x.detach().clone().requires_grad_(True)
    y = F.covpool_sqrtm(x, iterations, EPS, row_mean, backend=backend)
    if grad is None:
        grad = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, grad)
    return y.detach(), dx, grad


def _compare(x: torch.Tensor, iterations: int, row_mean: bool, backend: str) -> None:
    """float64: against the reference at the float64 tolerance; float32: the backend and the reference
    against the reference run in float64 on the same input (the backend's error at most twice the
    reference's, plus 8 ulp of the output's scale)."""
    y, dx, g = _run(x, iterations, row_mean, backend)
    y_ref, dx_ref, _ = _run(x, iterations, row_mean, "reference", g)
    assert y.dtype == x.dtype and dx.dtype == x.dtype
    if x.dtype == torch.float64:
        assert_close(y, y_ref, "out")
        assert_close(dx, dx_ref, "dx")
        return
    y_64, dx_64, _ = _run(x.double(), iterations, row_mean, "reference", g.double())
    assert_close_to_oracle(y, y_ref, y_64, "out", floor=ulp_floor(x.dtype, y_64))
    assert_close_to_oracle(dx, dx_ref, dx_64, "dx", floor=ulp_floor(x.dtype, dx_64))


@pytest.mark.parametrize("row_mean", [False, True])
@pytest.mark.parametrize("iterations", [1, 2, 5])
@pytest.mark.parametrize("C,H,W", [(3, 5, 7), (17, 9, 11), (64, 7, 9), (130, 3, 5)])
def test_cpu_vs_reference_float64(C, H, W, iterations, row_mean):
    _compare(torch.randn(2, C, H, W, dtype=torch.float64), iterations, row_mean, "cpu")


@pytest.mark.parametrize("row_mean", [False, True])
@pytest.mark.parametrize("C,M,iterations", [(17, 1001, 5), (64, 2304, 5), (5, 3, 2), (33, 257, 3)])
def test_cpu_vs_reference_float32(C, M, iterations, row_mean):
    _compare(torch.randn(3, C, M), iterations, row_mean, "cpu")


@pytest.mark.parametrize("iterations", [1, 4])
def test_cpu_batched_matmul_path(iterations):
    """C above the per-sample limit takes the at::bmm path (the one CUDA uses for large C)."""
    _compare(torch.randn(2, 200, 31, dtype=torch.float64), iterations, iterations == 4, "cpu")


def test_cpu_noncontiguous_and_shifted_input():
    """A channels-last view and a large common offset (the centred formula must not cancel)."""
    x = torch.randn(2, 13, 11, 17, dtype=torch.float64).permute(0, 3, 1, 2) + 1e3
    _compare(x, 5, False, "cpu")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_low_precision_inputs(dtype):
    x = torch.randn(2, 16, 99).to(dtype)
    oracle = covpool_sqrtm_ref(x.double(), 5, EPS, True)
    got = F.covpool_sqrtm(x, 5, EPS, True, backend="cpu")
    assert got.dtype == dtype
    assert_low_precision_close(got, covpool_sqrtm_ref(x, 5, EPS, True), oracle, "out")


def test_default_backend_on_cpu_is_the_kernel():
    x = torch.randn(1, 4, 5)
    assert _backend.select("covpool_sqrtm", (x,)).name == "cpu"


def test_converges_to_scipy_sqrtm():
    scipy_linalg = pytest.importorskip("scipy.linalg", reason="scipy is a test dependency (requirements.txt)")
    x = torch.randn(1, 8, 400, dtype=torch.float64)
    exact = torch.from_numpy(np.real(scipy_linalg.sqrtm(covpool_ref(x)[0].numpy())))
    errors = []
    for n in (1, 2, 3, 5, 8, 12, 20):
        got = F.covpool_sqrtm(x, n, EPS, backend="cpu")[0]
        errors.append(float((got - exact).abs().max() / exact.abs().max()))
    # The errors are relative to max |exact|; 100 ulp of float64 is where Newton–Schulz and scipy's
    # Schur method (both backward stable, the 8×8 covariance well conditioned) meet in round-off.
    floor = 100 * eps(torch.float64)
    assert_decreasing_above(errors, floor, "relative error per iteration count")
    assert errors[0] > 1e-2 and errors[-1] <= floor, errors


@pytest.mark.parametrize("row_mean", [False, True])
def test_constant_map_gives_finite_output_and_gradient(row_mean):
    x = torch.ones(2, 6, 5, 7, dtype=torch.float64) * torch.arange(6, dtype=torch.float64)[None, :, None, None]
    y, dx, _ = _run(x, 5, row_mean, "cpu")
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()
    assert y.abs().max() == 0
    y_ref, dx_ref, _ = _run(x, 5, row_mean, "reference", torch.ones_like(y))
    _, dx, _ = _run(x, 5, row_mean, "cpu", torch.ones_like(y))
    assert_close(dx, dx_ref, "dx")


def test_rank_deficient_input():
    z = torch.randn(2, 2, 45, dtype=torch.float64)
    x = torch.randn(2, 9, 2, dtype=torch.float64) @ z  # rank 2 of 9
    for n in (1, 5):
        y, dx, g = _run(x, n, False, "cpu")
        assert torch.isfinite(y).all() and torch.isfinite(dx).all()
        y_ref, dx_ref, _ = _run(x, n, False, "reference", g)
        assert_close(y, y_ref, "out")
        assert_close(dx, dx_ref, "dx")


@pytest.mark.parametrize("row_mean", [False, True])
@pytest.mark.parametrize("iterations", [1, 3])
def test_gradcheck_cpu_float64(iterations, row_mean):
    x = torch.randn(2, 5, 7, dtype=torch.float64, requires_grad=True)
    fn = lambda t: F.covpool_sqrtm(t, iterations, EPS, row_mean, backend="cpu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("row_mean", [False, True])
def test_opcheck(row_mean):
    x = torch.randn(2, 5, 9, dtype=torch.float64)
    torch.library.opcheck(FWD.default, (x, 3, EPS, row_mean))
    torch.library.opcheck(FWD.default, (x.float().requires_grad_(True), 2, EPS, row_mean))
    out, mean, a, states, trace = FWD(x, 3, EPS, row_mean)
    torch.library.opcheck(BWD.default, (torch.randn_like(out), x, mean, a, states, trace, out, row_mean))


@pytest.mark.compile
def test_compile_fullgraph():
    x = torch.randn(2, 6, 5, 5, requires_grad=True)
    fn = torch.compile(lambda t: F.covpool_sqrtm(t, 3, EPS, True, backend="cpu"), fullgraph=True, backend="aot_eager")
    y = fn(x)
    y_ref = covpool_sqrtm_ref(x.flatten(2), 3, EPS, True)
    y_64 = covpool_sqrtm_ref(x.detach().double().flatten(2), 3, EPS, True)
    assert_close_to_oracle(y, y_ref, y_64, "out", floor=ulp_floor(torch.float32, y_64))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_cpp_checks():
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_fwd: x must be a 3-D tensor"):
        FWD(x[0], 3, EPS, False)
    with pytest.raises(TypeError, match=r"srops::covpool_sqrtm_fwd: x must be float32 or float64, got Half"):
        FWD(x.half(), 3, EPS, False)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_fwd: iterations must be in \[1, 256\], got 0"):
        FWD(x, 0, EPS, False)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_fwd: eps must be finite and >= 0"):
        FWD(x, 2, float("nan"), False)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_fwd: x must be non-empty"):
        FWD(x[:, :, :0], 2, EPS, False)
    out, mean, a, states, trace = FWD(x, 3, EPS, False)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_bwd: grad must have shape \[2, 4, 4\]"):
        BWD(out[:, 0], x, mean, a, states, trace, out, False)
    with pytest.raises(TypeError, match=r"srops::covpool_sqrtm_bwd: states must have dtype Double"):
        BWD(out, x, mean, a, states.float(), trace, out, False)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_bwd: states must have shape \[2, 3\(N-1\), 4, 4\]"):
        BWD(out, x, mean, a, states[:, :2], trace, out, False)
    with pytest.raises(ValueError, match=r"srops::covpool_sqrtm_bwd: trace must have shape \[2\]"):
        BWD(out, x, mean, a, states, trace[:1], out, False)


def test_frontend_checks():
    with pytest.raises(ValueError, match=r"srops\.covpool_sqrtm: 'x' must be a 3-D or 4-D tensor"):
        F.covpool_sqrtm(torch.randn(4, 5), backend="cpu")
    with pytest.raises(TypeError, match=r"srops\.covpool_sqrtm: 'x' must have dtype"):
        F.covpool_sqrtm(torch.ones(1, 2, 3, dtype=torch.int64), backend="cpu")
    with pytest.raises(ValueError, match=r"srops\.covpool_sqrtm: 'iterations' must be an int in \[1, 256\]"):
        F.covpool_sqrtm(torch.randn(1, 2, 3), 0, backend="cpu")


def _twin_modules(channels: int, max_size: int | None):
    cpu = SecondOrderAttention(channels, reduction=4, max_size=max_size, backend="cpu").double()
    ref = SecondOrderAttention(channels, reduction=4, max_size=max_size, backend="reference").double()
    ref.load_state_dict(cpu.state_dict())
    return cpu, ref


@pytest.mark.parametrize("max_size,hw", [(None, (9, 11)), (11, (11, 15)), (7, (11, 15))])
def test_second_order_attention_cpu_vs_reference(max_size, hw):
    """Output, input and parameter gradients; crop with a side equal to, and sides above, max_size."""
    mods = _twin_modules(12, max_size)
    x0 = torch.randn(2, 12, *hw, dtype=torch.float64)
    grad = torch.randn_like(x0)
    results = []
    for mod in mods:
        x = x0.clone().requires_grad_(True)
        y = mod(x)
        y.backward(grad)
        results.append((y.detach(), x.grad, [p.grad for p in mod.parameters()]))
    (y, dx, dps), (y_ref, dx_ref, dps_ref) = results
    assert_close(y, y_ref, "out")
    assert_close(dx, dx_ref, "dx")
    for i, (dp, dp_ref) in enumerate(zip(dps, dps_ref)):
        assert_close(dp, dp_ref, f"param {i}")


# ---- CUDA kernel (needs a GPU) ----


@pytest.fixture(autouse=True)
def _no_tf32():
    """The reference must run its matmuls in full float32 to serve as the oracle."""
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.parametrize("row_mean", [False, True])
@pytest.mark.parametrize("iterations", [1, 2, 5])
@pytest.mark.parametrize("C,H,W", [(3, 5, 7), (64, 17, 19), (100, 9, 11), (130, 9, 11), (64, 300, 301)])
def test_cuda_vs_reference_float32(C, H, W, iterations, row_mean):
    """C = 64: iterations in shared memory; 100: backward in global scratch (H100); 130: at::bmm path."""
    _compare(torch.randn(3, C, H, W, device="cuda"), iterations, row_mean, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("C", [17, 64])
def test_cuda_vs_reference_float64(C):
    _compare(torch.randn(2, C, 13, 11, dtype=torch.float64, device="cuda"), 5, False, "cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("C", [64, 130])
def test_cuda_low_precision_inputs(dtype, C):
    x = torch.randn(2, C, 23, 29, device="cuda").to(dtype)
    g = torch.randn(2, C, device="cuda")
    y, dx, _ = _run(x, 5, True, "cuda", g.to(dtype))
    y_same, dx_same, _ = _run(x, 5, True, "reference", g.to(dtype))
    y_oracle, dx_oracle, _ = _run(x.double(), 5, True, "reference", g.double())
    assert y.dtype == dtype and dx.dtype == dtype
    assert_low_precision_close(y, y_same, y_oracle, "out")
    assert_low_precision_close(dx, dx_same, dx_oracle, "dx")


@pytest.mark.gpu
def test_cuda_gradcheck_and_opcheck():
    x = torch.randn(2, 5, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    fn = lambda t: F.covpool_sqrtm(t, 3, EPS, False, backend="cuda")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)
    torch.library.opcheck(FWD.default, (x.detach().float(), 3, EPS, True))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("C,H,W", [(5, 7, 9), (64, 48, 48), (70, 300, 301)])
def test_cuda_plain_covpool_vs_reference(C, H, W, dtype):
    x = torch.randn(2, C, H, W, device="cuda", dtype=dtype)
    outs = []
    for backend in ("cuda", "reference"):
        xx = x.clone().requires_grad_(True)
        y = F.covpool(xx, backend=backend)
        g = torch.randn(y.shape, dtype=dtype, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        y.backward(g)
        outs.append((y.detach(), xx.grad))
    if dtype == torch.float64:
        assert_close(outs[0][0], outs[1][0], "out")
        assert_close(outs[0][1], outs[1][1], "dx")
        return
    xo = x.double().requires_grad_(True)
    yo = F.covpool(xo, backend="reference")
    yo.backward(g.double())
    for (a, r), o, name in zip(zip(outs[0], outs[1]), (yo.detach(), xo.grad), ("out", "dx")):
        assert_close_to_oracle(a, r, o, name, floor=ulp_floor(dtype, o))


@pytest.mark.gpu
def test_cuda_second_order_attention_and_constant_map():
    mod = SecondOrderAttention(64, backend="cuda").cuda()
    ref = SecondOrderAttention(64, backend="reference").cuda()
    ref.load_state_dict(mod.state_dict())
    oracle = copy.deepcopy(ref).double()
    x0 = torch.randn(2, 64, 24, 25, device="cuda")
    for m in (mod, ref, oracle):
        x = x0.clone().to(next(m.parameters()).dtype).requires_grad_(True)
        m(x).sum().backward()
        m.dx = x.grad
    assert_close_to_oracle(mod.dx, ref.dx, oracle.dx, "dx", floor=ulp_floor(torch.float32, oracle.dx))
    y, dx, _ = _run(torch.ones(1, 64, 8, 8, device="cuda"), 5, True, "cuda")
    assert torch.isfinite(y).all() and torch.isfinite(dx).all()

