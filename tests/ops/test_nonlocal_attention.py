"""nonlocal_attention: reference against an independent formula, sdpa against reference, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import srops.functional as F
from srops import BackendUnavailableError
from srops.testing import assert_close, assert_close_to_oracle, float64_tolerance, ulp_floor

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
    # float64 rule: d-long logits and M-long weighted sums; softmax's condition is the logits' spread
    logits = scale * (q @ k.transpose(1, 2))
    cond = 1 + float(logits.max() - logits.min())
    tol = float64_tolerance(shape[3] + shape[2], cond=cond, scale=float(v.abs().max()))
    np.testing.assert_allclose(actual.numpy(), expected, **tol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sdpa_matches_reference_outputs_and_grads(shape, dtype):
    """float64: at the float64 tolerance; float32: both against the reference in float64 on the same inputs."""
    q, k, v = make(*shape, dtype=dtype, grad=True)
    grad_out = torch.randn(shape[0], shape[1], shape[4], dtype=dtype)
    results = {}
    for backend, inputs, g in (("reference", (q, k, v), grad_out), ("sdpa", (q, k, v), grad_out),
                               ("oracle", [t.detach().double().requires_grad_() for t in (q, k, v)], grad_out.double())):
        out = F.nonlocal_attention(*inputs, 1.0, backend="reference" if backend == "oracle" else backend)
        results[backend] = (out.detach(), *torch.autograd.grad(out, inputs, g))
    for name, a, e, o in zip(("out", "dq", "dk", "dv"), results["sdpa"], results["reference"], results["oracle"]):
        if dtype == torch.float64:
            assert_close(a, e, name)
        else:
            assert_close_to_oracle(a, e, o, name, floor=ulp_floor(dtype, o))


@pytest.mark.parametrize("backend", ["reference", "sdpa"])
def test_gradcheck(backend):
    q, k, v = make(2, 7, 5, 8, 3, grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: F.nonlocal_attention(a, b, c, 0.7, backend=backend), (q, k, v))


def test_half_precision_sdpa_within_twice_the_reference_error():
    """fp16/bf16: sdpa and the reference against the reference in float64 on the same (rounded) inputs."""
    q, k, v = make(2, 64, 16, 8, 8, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        low = [t.to(dtype) for t in (q, k, v)]
        oracle = F.nonlocal_attention(*(t.double() for t in low), backend="reference")
        out = F.nonlocal_attention(*low, backend="sdpa")
        assert out.dtype == dtype
        assert_close_to_oracle(out, F.nonlocal_attention(*low, backend="reference"), oracle, str(dtype),
                               floor=ulp_floor(dtype, oracle))


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


# Non-finite inputs: where each case puts the value (batch item, row, column of q, k or v).
NONFINITE = {
    "q_element": ("q", (0, 2, 1)), "q_row": ("q", (1, 3, slice(None))),
    "k_element": ("k", (0, 1, 2)), "k_every_key": ("k", (1, slice(None), 0)),
    "v_element": ("v", (0, 1, 0)), "v_row": ("v", (1, 2, slice(None))),
}


@pytest.mark.parametrize("m", [3, 40])  # 3 keys: PyTorch's CPU flash kernel takes its short-row path
@pytest.mark.parametrize("grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("case", list(NONFINITE))
@pytest.mark.parametrize("backend, dtype", [("sdpa", torch.float64), ("sdpa", torch.float32), ("triton", torch.float32)])
def test_non_finite_inputs_give_the_references_nan_and_inf(backend, dtype, case, grad, m):
    """NaN, −inf, +inf in q, k or v: the output has NaN and ±inf exactly where the reference has them, and
    its finite values. Positive inputs make a −inf query (or a −inf in every key) score −inf on every key,
    a row SDPA's kernels return as zeros (fully masked) where softmax gives NaN."""
    from srops.testing import assert_close_to_oracle, ulp_floor

    reason = _backend_reason(backend, dtype)
    if reason:
        pytest.skip(f"{backend} cannot run here: {reason}")
    name, index = NONFINITE[case]
    reached = 0
    for positive in (False, True):
        for value in (float("nan"), float("-inf"), float("inf")):
            torch.manual_seed(5)
            q, k, v = make(2, 37, m, 8, 8)
            if positive:
                q, k, v = q.abs(), k.abs(), v.abs()
            {"q": q, "k": k, "v": v}[name][index] = value
            oracle = F.nonlocal_attention(q, k, v, 0.5, backend="reference")
            q, k, v = (t.to(dtype).requires_grad_(grad) for t in (q, k, v))
            expected = F.nonlocal_attention(q, k, v, 0.5, backend="reference").detach()
            out = F.nonlocal_attention(q, k, v, 0.5, backend=backend).detach()
            what = f"{case}={value}, {'positive' if positive else 'mixed signs'}"
            reached += bool(expected.isnan().any())
            assert torch.equal(out.isnan(), expected.isnan()), f"{what}: NaN at {describe_nan(out, expected)}"
            assert torch.equal(out.isinf() * out.sign(), expected.isinf() * expected.sign()), f"{what}: ±inf"
            finite = expected.isfinite()
            if dtype == torch.float64:
                assert_close(out[finite], expected[finite], what)
            else:
                assert_close_to_oracle(out[finite], expected[finite], oracle[finite], what,
                                       floor=ulp_floor(dtype, oracle[finite]))
    assert reached >= 2, "the cases must put NaN in the output"


def _backend_reason(backend: str, dtype: torch.dtype) -> str | None:
    from srops import _backend

    return _backend._OPS["nonlocal_attention"].backends[backend].reason((torch.zeros(1, 2, 4, dtype=dtype),) * 3)


def describe_nan(out: torch.Tensor, expected: torch.Tensor) -> str:
    """The (item, row) pairs whose NaN pattern differs, at most five."""
    rows = (out.isnan() != expected.isnan()).any(-1).nonzero().tolist()
    return f"{len(rows)} rows, e.g. {rows[:5]}"


def _nonlocal_block(wrapped: bool, monkeypatch) -> tuple[torch.nn.Module, torch.Tensor]:
    """A NonLocal2d on the sdpa backend and its input; ``wrapped=False`` routes the attention through SDPA's
    own autograd (no srops autograd Function), the baseline of the memory checks."""
    from srops import NonLocal2d
    from srops.ops.nonlocal_attention import frontend

    monkeypatch.setattr(frontend, "_WRAPPED", dict(frontend._WRAPPED) if wrapped else {})
    torch.manual_seed(0)
    block = NonLocal2d(32, regions=2, backend="sdpa")
    with torch.no_grad():
        block.out.weight.normal_(0, 0.02)
    return block, torch.randn(4, 32, 24, 24, requires_grad=True)


def test_first_order_backward_saves_and_peaks_no_more_than_sdpa_autograd(monkeypatch):
    """fwd + first-order bwd through the double-backward-capable wrapper: the bytes autograd keeps from
    forward to backward and the peak of allocated bytes are no more than with SDPA's own autograd."""
    from srops.profiling import peak_memory_mb

    def saved_bytes_and_peak(use_wrapper: bool) -> tuple[int, float]:
        block, x = _nonlocal_block(use_wrapper, monkeypatch)
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = block(x)
        y.backward(torch.ones_like(y))

        def step() -> None:
            out = block(x)
            out.backward(torch.ones_like(out))

        step()
        return sum(storages.values()), peak_memory_mb(step, "cpu")

    saved, peak = saved_bytes_and_peak(True)
    saved_sdpa, peak_sdpa = saved_bytes_and_peak(False)
    assert saved <= saved_sdpa, (saved, saved_sdpa)
    assert peak <= peak_sdpa, (peak, peak_sdpa)


class _Created(torch.overrides.TorchFunctionMode):
    """Weak references to every tensor a torch function returns inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        import weakref

        result = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(result):
            if isinstance(t, torch.Tensor):
                self.refs.append(weakref.ref(t))
        return result


def _graph_nodes(fn) -> set:
    seen, todo = set(), [fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(n for n, _ in node.next_functions)
    return seen


@pytest.mark.parametrize("backend", ["sdpa", "triton"])
def test_forward_keeps_no_graph_inside_the_wrapper(backend):
    """After forward, no tensor created during it is alive with an autograd graph of its own (a graph not
    part of the output's): the wrapper keeps only its saved tensors, not an inner graph to backpropagate."""
    import gc

    reason = _backend_reason(backend, torch.float32)
    if reason:
        pytest.skip(f"{backend} cannot run here: {reason}")
    q, k, v = make(2, 20, 9, 8, 8, dtype=torch.float32, grad=True)
    with _Created() as created:
        out = F.nonlocal_attention(q, k, v, backend=backend)
    gc.collect()
    graph = _graph_nodes(out.grad_fn)
    alive = [r() for r in created.refs if r() is not None]
    assert alive, "the mode saw the forward's tensors"
    stray = [t.grad_fn for t in alive if t.grad_fn is not None and t.grad_fn not in graph]
    assert not stray, f"forward left graphs alive outside the output's: {stray}"
