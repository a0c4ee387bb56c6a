"""Double backward (create_graph=True: gradient penalties, gradgradcheck) on every backend.

float64 ``gradgradcheck`` for every backend that takes float64; the Triton backend (no float64)
is compared in float32 with the reference's second-order gradients.
"""
from __future__ import annotations

import pytest
import torch
from torch.autograd import gradgradcheck

import srops.functional as F
from srops import _backend, _ext
from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention
from srops.testing import assert_close, assert_close_to_oracle, ulp_floor

EXT = ["cpu"] if _ext.HAS_EXT else []
needs_ext = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")


def _x(*shape):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("backend", ["reference"] + EXT)
def test_gradgradcheck_covpool(backend):
    assert gradgradcheck(lambda t: F.covpool(t, backend=backend), (_x(2, 3, 7),))


@pytest.mark.parametrize("row_mean", [False, True])
@pytest.mark.parametrize("backend", ["reference"] + EXT)
def test_gradgradcheck_covpool_sqrtm(backend, row_mean):
    fn = lambda t: F.covpool_sqrtm(t, 3, 1e-5, row_mean, backend=backend)  # noqa: E731
    assert gradgradcheck(fn, (_x(2, 3, 6),), atol=1e-6, rtol=1e-4)


def test_gradgradcheck_sqrtm_ns():
    a = torch.randn(2, 3, 3, dtype=torch.float64)
    a = (a @ a.transpose(1, 2) + torch.eye(3, dtype=torch.float64)).requires_grad_()
    assert gradgradcheck(lambda t: F.sqrtm_ns(t, 3), (a,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backend", ["reference"] + EXT)
def test_covpool_second_order_is_not_zero(backend):
    """‖∂L/∂x‖² penalty: its gradient equals the reference's (was exactly 0 on ``cpu``)."""
    x = torch.randn(2, 4, 9, dtype=torch.float64)
    grads = {}
    for name in ("reference", backend):
        xi = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(F.covpool_sqrtm(xi, 3, backend=name).square().sum(), xi, create_graph=True)
        (grads[name],) = torch.autograd.grad(g.square().sum(), xi)
    assert grads[backend].abs().max() > 0
    assert_close(grads[backend], grads["reference"], "dx")


def _gate_modules(C: int):
    torch.manual_seed(1)
    mlp = torch.nn.Sequential(torch.nn.Linear(C, 2), torch.nn.ReLU(), torch.nn.Linear(2, C)).double()
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 1, 3, padding=1), torch.nn.BatchNorm2d(1)).double()
    return mlp, conv


CBAM_OPS = {
    "channel_attention": lambda x, mlp, conv, b: F.channel_attention(x, mlp, backend=b),
    "channel_attention_avg": lambda x, mlp, conv, b: F.channel_attention(x, mlp, ("avg",), backend=b),
    "spatial_attention": lambda x, mlp, conv, b: F.spatial_attention(x, conv, backend=b),
    "cbam": lambda x, mlp, conv, b: F.cbam(x, mlp, conv, backend=b),
    "channel_gate": lambda x, mlp, conv, b: F.channel_gate(x, mlp, backend=b),
    "spatial_gate": lambda x, mlp, conv, b: F.spatial_gate(x, conv, backend=b),
}


@pytest.mark.parametrize("op", list(CBAM_OPS))
@pytest.mark.parametrize("backend", ["reference"] + EXT)
def test_gradgradcheck_cbam(op, backend):
    mlp, conv = _gate_modules(4)
    fn = lambda t: CBAM_OPS[op](t, mlp, conv, backend)  # noqa: E731
    assert gradgradcheck(fn, (_x(2, 4, 3, 5),), atol=1e-6, rtol=1e-4)


@needs_ext
def test_gradgradcheck_cbam_registered_ops():
    """The registered autograd of each compiled pass (the torch.compile path) is differentiable too."""
    ops = torch.ops.srops
    x, c, s = _x(2, 3, 4, 5), torch.rand(2, 3, dtype=torch.float64, requires_grad=True), torch.rand(
        2, 4, 5, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda t, cc, ss: ops.cbam_apply_fwd(t, cc, ss), (x, c, s))
    assert gradgradcheck(lambda t, cc: ops.cbam_spatial_pool_fwd(t, cc)[0], (x, c))
    assert gradgradcheck(lambda t: ops.cbam_channel_pool_fwd(t, True, True)[0], (x,))


def _discriminator(backend: str, kind: str) -> torch.nn.Module:
    torch.manual_seed(2)
    attention = {"cbam": lambda: CBAM(8, reduction=2, backend=backend),
                 "channel": lambda: ChannelAttention(8, reduction=2, backend=backend),
                 "spatial": lambda: SpatialAttention(backend=backend)}[kind]()
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), attention, torch.nn.Conv2d(8, 1, 3)).double()


@pytest.mark.parametrize("kind", ["cbam", "channel", "spatial"])
@pytest.mark.parametrize("backend", EXT)
def test_gradient_penalty_through_attention_matches_reference(backend, kind):
    """conv → attention → conv with a penalty on ‖∂D/∂x‖²: every parameter gets the reference's gradient."""
    x = torch.randn(3, 3, 9, 7, dtype=torch.float64)
    nets = {name: _discriminator(name, kind) for name in ("reference", backend)}
    for net in nets.values():
        xi = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(net(xi).sum(), xi, create_graph=True)
        g.square().sum().backward()
    for (name, p_ref), (_, p) in zip(nets["reference"].named_parameters(), nets[backend].named_parameters()):
        if p_ref.grad is None:  # the last conv's bias: the penalty does not depend on it
            assert p.grad is None or not p.grad.any(), name
            continue
        assert p.grad is not None, f"{name}: no gradient through the penalty on {backend}"
        assert_close(p.grad, p_ref.grad, f"{name}.grad")


NL_BACKENDS = ["reference", "sdpa"]


@pytest.mark.parametrize("backend", NL_BACKENDS)
def test_gradgradcheck_nonlocal_attention(backend):
    q, k, v = _x(2, 5, 3), _x(2, 4, 3), _x(2, 4, 2)
    fn = lambda a, b, c: F.nonlocal_attention(a, b, c, 0.7, backend=backend)  # noqa: E731
    assert gradgradcheck(fn, (q, k, v))


def _penalty_grads(backend: str, dtype: torch.dtype):
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, n, 4).to(dtype).requires_grad_() for n in (6, 5, 5))  # float32 values
    out = F.nonlocal_attention(q, k, v, 0.5, backend=backend)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v), create_graph=True)
    penalty = sum(g.square().sum() for g in grads)
    return torch.autograd.grad(penalty, (q, k, v))


@pytest.mark.parametrize("backend", ["sdpa", "triton"])
def test_nonlocal_float32_double_backward_matches_reference(backend):
    """float32 runs PyTorch's CPU flash SDPA kernel (no double backward of its own) or the Triton kernels."""
    reason = _backend._OPS["nonlocal_attention"].backends[backend].reason((torch.zeros(1, 2, 4),) * 3)
    if reason:
        pytest.skip(f"{backend} backend cannot run here: {reason}")
    got = _penalty_grads(backend, torch.float32)
    want = _penalty_grads("reference", torch.float32)
    oracle = _penalty_grads("reference", torch.float64)  # the same inputs, in float64
    for name, a, b, o in zip("qkv", got, want, oracle):
        assert_close_to_oracle(a, b, o, f"d{name}", floor=ulp_floor(torch.float32, o))
