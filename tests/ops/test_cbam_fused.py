"""Fused CBAM backends (``cpu`` C++ kernels; ``cuda`` on a GPU) against the reference.

Outputs, the input gradient and every parameter gradient (MLP with its BatchNorm, spatial conv and
BatchNorm), BatchNorm running statistics, train and eval mode, odd shapes, both pool sets, ties in
the max pools, float64 gradcheck, ``torch.library.opcheck`` of every compiled op, bad inputs.
"""
from __future__ import annotations

import copy

import pytest
import torch

import srops.functional as F
from srops import _backend, _ext
from srops.nn.cbam import CBAM, ChannelAttention, SpatialAttention
from srops.testing import (
    TOLERANCES, assert_close, assert_close_to_oracle, assert_low_precision_close, float64_tolerance, ulp_floor,
)

pytestmark = pytest.mark.skipif(not _ext.HAS_EXT, reason=f"srops._C not available: {_ext.EXT_ERROR}")

SHAPES = [(2, 3, 1, 1), (3, 17, 7, 5), (2, 64, 33, 47)]
POOLS = [("avg", "max"), ("avg",)]
ops = torch.ops.srops


def _module(kind: str, C: int, pool, mlp_bn: bool, spatial_bn: bool, bias: bool, backend: str) -> torch.nn.Module:
    if kind == "cbam":
        return CBAM(C, reduction=4, pool=pool, mlp_bn=mlp_bn, spatial_bn=spatial_bn, spatial_bias=bias, backend=backend)
    if kind == "channel":
        return ChannelAttention(C, reduction=4, pool=pool, mlp_bn=mlp_bn, backend=backend)
    return SpatialAttention(7, bn=spatial_bn, bias=bias, backend=backend)


def _randomise_bn(module: torch.nn.Module) -> None:
    """Non-trivial BatchNorm affine parameters and running statistics (so eval mode is tested too)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)


def _compare_modules(ref: torch.nn.Module, fused: torch.nn.Module, x: torch.Tensor, tol: dict | None = None) -> None:
    """Forward + backward of both modules on x; compares output, x.grad, parameter grads, buffers."""
    xr, xf = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr, yf = ref(xr), fused(xf)
    g = torch.randn_like(yr)
    yr.backward(g)
    yf.backward(g)
    tol = tol or TOLERANCES[x.dtype]
    assert_close(yf, yr, "output", **tol)
    assert_close(xf.grad, xr.grad, "x.grad", **tol)
    for (name, pr), (_, pf) in zip(ref.named_parameters(), fused.named_parameters()):
        assert pf.grad is not None, f"{name}: no gradient through the fused backend"
        assert_close(pf.grad, pr.grad, f"{name}.grad", **tol)
    for (name, br), (_, bf) in zip(ref.named_buffers(), fused.named_buffers()):
        assert_close(bf.to(br.dtype), br, name, **(tol if br.is_floating_point() else dict(atol=0, rtol=0)))


def _pair(kind, C, pool, mlp_bn, spatial_bn, bias, train, dtype, device="cpu", backend="cpu"):
    ref = _module(kind, C, pool, mlp_bn, spatial_bn, bias, "reference").to(device, dtype)
    _randomise_bn(ref)
    fused = _module(kind, C, pool, mlp_bn, spatial_bn, bias, backend).to(device, dtype)
    fused.load_state_dict(copy.deepcopy(ref.state_dict()))
    ref.train(train), fused.train(train)
    return ref, fused


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("mlp_bn", [False, True], ids=["mlp", "mlp_bn"])
@pytest.mark.parametrize("pool", POOLS, ids=["avgmax", "avg"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cbam_module_float64(shape, pool, mlp_bn, train):
    B, C, H, W = shape
    ref, fused = _pair("cbam", C, pool, mlp_bn, True, False, train, torch.float64)
    _compare_modules(ref, fused, torch.randn(shape, dtype=torch.float64))


def _run(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(g.to(y.dtype))
    return [y.detach(), x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [(2, 17, 7, 5), (2, 64, 33, 47)], ids=lambda s: "x".join(map(str, s)))
def test_cbam_module_float32(shape, train):
    """float32: output and every gradient within 2× the reference's own float32 error vs float64."""
    ref64, _ = _pair("cbam", shape[1], POOLS[0], False, True, False, train, torch.float64)
    ref32 = copy.deepcopy(ref64).float()
    ref64 = copy.deepcopy(ref32).double()  # the oracle sees the float32 weights, input and gradient
    fused = copy.deepcopy(ref32)
    fused.backend = fused.channel.backend = fused.spatial.backend = "cpu"
    x, g = torch.randn(shape).double(), torch.randn(shape).double()
    oracle, base, got = _run(ref64, x, g), _run(ref32, x.float(), g), _run(fused, x.float(), g)
    names = ["output", "x.grad"] + [n for n, _ in ref64.named_parameters()]
    for name, o, b, a in zip(names, oracle, base, got):
        assert a.dtype == torch.float32
        # floor: the float32 table's 1e-5 relative to the magnitude (PyTorch is sometimes luckier on a scalar sum)
        assert_low_precision_close(a, b, o, name, floor=1e-5 * float(o.abs().max()))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("pool", POOLS, ids=["avgmax", "avg"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_channel_attention_module(shape, pool, train):
    ref, fused = _pair("channel", shape[1], pool, True, False, False, train, torch.float64)
    _compare_modules(ref, fused, torch.randn(shape, dtype=torch.float64))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("bn_bias", [(True, False), (False, True)], ids=["bn", "bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_spatial_attention_module(shape, bn_bias, train):
    ref, fused = _pair("spatial", shape[1], POOLS[0], False, *bn_bias, train, torch.float64)
    _compare_modules(ref, fused, torch.randn(shape, dtype=torch.float64))


@pytest.mark.parametrize("kind", ["cbam", "channel", "spatial"])
def test_large_map_several_tiles(kind):
    """H·W = 67·71 > 4096: the kernels' position tiles and H·W chunks both split."""
    ref, fused = _pair(kind, 5, POOLS[0], True, True, False, True, torch.float64)
    _compare_modules(ref, fused, torch.randn(2, 5, 67, 71, dtype=torch.float64))


def test_parameter_grads_without_input_grad():
    """x not requiring grad: the MLP's and the conv's parameters still get the reference's gradients."""
    ref, fused = _pair("cbam", 17, POOLS[0], True, True, False, True, torch.float64)
    x = torch.randn(3, 17, 7, 5, dtype=torch.float64)
    ref(x).square().sum().backward()
    fused(x).square().sum().backward()
    for (name, pr), (_, pf) in zip(ref.named_parameters(), fused.named_parameters()):
        assert_close(pf.grad, pr.grad, f"{name}.grad")


def test_non_contiguous_input():
    ref, fused = _pair("cbam", 17, POOLS[0], True, True, False, True, torch.float64)
    x = torch.randn(3, 17, 5, 7, dtype=torch.float64).transpose(2, 3)  # [3, 17, 7, 5], non-contiguous
    _compare_modules(ref, fused, x)
    _compare_modules(ref, fused, x.contiguous(memory_format=torch.channels_last))


@pytest.mark.compile
@pytest.mark.slow
def test_torch_compile_fullgraph():
    ref, fused = _pair("cbam", 17, POOLS[0], True, True, False, True, torch.float64)
    compiled = torch.compile(fused, fullgraph=True, dynamic=False)
    _compare_modules(ref, compiled, torch.randn(3, 17, 7, 5, dtype=torch.float64))


def _zero_mlp(module: torch.nn.Module) -> None:
    """All MLP weights and biases zero: c = 0.5 for every channel, so y = x·c keeps x's ties."""
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            with torch.no_grad():
                m.weight.zero_(), m.bias.zero_()


@pytest.mark.parametrize("kind", ["cbam", "channel", "spatial"])
@pytest.mark.parametrize("data", ["constant", "repeated"])
def test_ties_route_like_reference(kind, data):
    """Ties in both max pools: the gradient goes to the first maximal element, as the reference's."""
    shape = (2, 17, 7, 5)
    x = torch.ones(shape, dtype=torch.float64) if data == "constant" else torch.randint(0, 3, shape).double()
    ref, fused = _pair(kind, 17, POOLS[0], False, True, False, True, torch.float64)
    _zero_mlp(ref), _zero_mlp(fused)
    _compare_modules(ref, fused, x)


def test_tie_routing_explicit():
    """Independent of the reference: with ties, dx of the max statistic lands on the lowest index."""
    x = torch.tensor([[[[1.0, 3.0], [3.0, 2.0]]]], dtype=torch.float64)  # [1, 1, 2, 2]; max 3 at flat 1 and 2
    stats, argmax = ops.cbam_channel_pool_fwd(x, False, True)
    assert stats.item() == 3.0 and argmax.item() == 1
    dx = ops.cbam_channel_pool_bwd(torch.ones(1, 1, 1, dtype=torch.float64), x, argmax, False, True)
    assert dx.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    x2 = torch.tensor([2.0, 5.0, 5.0, 1.0], dtype=torch.float64).view(1, 4, 1, 1)  # channels 1 and 2 tie
    pooled, am = ops.cbam_spatial_pool_fwd(x2, None)
    assert am.item() == 1 and pooled.flatten().tolist() == [5.0, 13.0 / 4]


@pytest.mark.parametrize("op", ["channel_gate", "spatial_gate"])
def test_gates_functional(op):
    x = torch.randn(3, 17, 7, 5, dtype=torch.float64, requires_grad=True)
    layer = (torch.nn.Linear(17, 17) if op == "channel_gate" else torch.nn.Conv2d(2, 1, 7, padding=3)).double()
    outs = []
    for backend in ("reference", "cpu"):
        x.grad = None
        layer.zero_grad()
        y = getattr(F, op)(x, layer, backend=backend)
        y.backward(torch.ones_like(y))
        outs.append((y.detach(), x.grad.clone(), layer.weight.grad.clone()))
    for name, a, b in zip(("out", "x.grad", "weight.grad"), outs[1], outs[0]):
        assert_close(a, b, name)


def test_nan_propagates_like_reference():
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    x[0, 2, 1, 1] = float("nan")
    mlp = torch.nn.Linear(5, 5).double()
    conv = torch.nn.Conv2d(2, 1, 3, padding=1).double()
    ref = F.cbam(x, mlp, conv, backend="reference")
    out = F.cbam(x, mlp, conv, backend="cpu")
    assert_close(out, ref, "out", equal_nan=True, **TOLERANCES[torch.float64])
    stats, argmax = ops.cbam_channel_pool_fwd(x, True, True)
    assert torch.isnan(stats[0, 2]).all() and argmax[0, 2].item() == 1 * 4 + 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    """float16/bfloat16 (computed in float32): output and gradients vs a float64 oracle within 2× PyTorch's
    own same-dtype error (the kernels round y = x·c to the dtype as the reference does, so max ties agree)."""
    ref64, _ = _pair("cbam", 17, POOLS[0], False, True, False, False, torch.float64)
    x, g = torch.randn(2, 17, 9, 11).to(dtype).double(), torch.randn(2, 17, 9, 11).to(dtype).double()
    low = copy.deepcopy(ref64).to(dtype)
    ref64 = copy.deepcopy(low).double()  # the oracle sees the rounded weights, input and gradient
    fused = copy.deepcopy(low)
    fused.backend = fused.channel.backend = fused.spatial.backend = "cpu"
    oracle, torch_low, out = _run(ref64, x, g), _run(low, x.to(dtype), g), _run(fused, x.to(dtype), g)
    names = ["output", "x.grad"] + [n for n, _ in ref64.named_parameters()]
    for name, o, b, a in zip(names, oracle, torch_low, out):
        assert a.dtype == dtype
        assert_low_precision_close(a, b, o, name, floor=1e-3 * float(o.abs().max()))


def test_gradcheck_ops_float64():
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    c = torch.rand(2, 3, dtype=torch.float64, requires_grad=True)
    s = torch.rand(2, 3, 4, dtype=torch.float64, requires_grad=True)
    for avg, mx in ((True, True), (True, False), (False, True)):
        assert torch.autograd.gradcheck(lambda t: ops.cbam_channel_pool_fwd(t, avg, mx)[0], (x,))
    assert torch.autograd.gradcheck(lambda t, g: ops.cbam_spatial_pool_fwd(t, g)[0], (x, c))
    assert torch.autograd.gradcheck(lambda t: ops.cbam_spatial_pool_fwd(t, None)[0], (x,))
    assert torch.autograd.gradcheck(lambda t, g, h: ops.cbam_apply_fwd(t, g, h), (x, c, s))
    assert torch.autograd.gradcheck(lambda t, g: ops.cbam_apply_fwd(t, g, None), (x, c))
    assert torch.autograd.gradcheck(lambda t, h: ops.cbam_apply_fwd(t, None, h), (x, s))


def test_gradcheck_cbam_end_to_end():
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 3)).double()
    conv = torch.nn.Conv2d(2, 1, 3, padding=1).double()
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, requires_grad=True)
    params = [*mlp.parameters(), *conv.parameters()]

    def fn(x, *_):
        return F.cbam(x, mlp, conv, backend="cpu")

    assert torch.autograd.gradcheck(fn, (x, *params))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("pool", [(True, True), (True, False), (False, True)], ids=["avgmax", "avg", "max"])
@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (3, 17, 7, 5), (2, 5, 67, 71), (2, 300, 16, 16)],
                         ids=lambda s: "x".join(map(str, s)))
def test_input_backward_is_the_sum_of_the_pass_gradients(shape, pool, device):
    """cbam_input_bwd's one-pass dx equals the three per-pass backward ops' x-gradients added, with
    ties (repeated values) so that spatial and channel argmaxes meet on some elements. On CUDA, 16 × 16
    positions take the 16-byte packs and C = 300 two staging chunks of channel terms."""
    avg, mx = pool
    B, C, H, W = shape
    kw = dict(dtype=torch.float64, device=device)
    x = torch.randint(0, 3, shape, device=device).double()
    c, s, g = torch.rand(B, C, **kw), torch.rand(B, H, W, **kw), torch.randn(shape, **kw)
    _, am1 = ops.cbam_channel_pool_fwd(x, avg, mx)
    _, am2 = ops.cbam_spatial_pool_fwd(x, c)
    gp, gst = torch.randn(B, 2, H, W, **kw), torch.randn(B, C, int(avg) + int(mx), **kw)
    expected = (ops.cbam_apply_bwd(g, x, c, s)[0] + ops.cbam_spatial_pool_bwd(gp, x, c, am2)[0]
                + ops.cbam_channel_pool_bwd(gst, x, am1, avg, mx))
    dx = ops.cbam_input_bwd(g, c, s, gp, am2, gst, am1 if mx else None, avg, mx)
    assert_close(dx, expected, "dx")
    # each piece alone: without pooled gradients, without gates
    assert_close(ops.cbam_input_bwd(g, c, s, None, None, None, None, avg, mx),
                 ops.cbam_apply_bwd(g, x, c, s)[0], "dx (apply only)")
    assert_close(ops.cbam_input_bwd(g, None, None, gp, am2, None, None, avg, mx),
                 g + ops.cbam_spatial_pool_bwd(gp, x, None, am2)[0], "dx (no gates)")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "misaligned"])
def test_cuda_vectorised_ops_against_cpu(dtype, offset):
    """CUDA cbam_apply_fwd, cbam_spatial_pool_fwd, cbam_apply_bwd and cbam_input_bwd against the CPU kernels,
    on 16-byte-aligned tensors (packs) and on views one element into their storage (the one-element path)."""
    B, C, H, W = 2, 40, 16, 24
    x, g, c, s = (torch.randn(*shape).to(dtype) for shape in ((B, C, H, W), (B, C, H, W), (B, C), (B, H, W)))
    gp, gst = torch.randn(B, 2, H, W).to(dtype), torch.randn(B, C, 2).to(dtype)
    _, am1 = ops.cbam_channel_pool_fwd(x, True, True)
    _, am2 = ops.cbam_spatial_pool_fwd(x, c)

    def placed(a, dev, dt):
        """a in dt on dev, `offset` elements into its storage."""
        return torch.empty(a.numel() + offset, dtype=dt, device=dev)[offset:].view(a.shape).copy_(a)

    def on(dev, dt=dtype):
        xd, gd, cd, sd, gpd, gstd = (placed(a, dev, dt) for a in (x, g, c, s, gp, gst))
        pooled, sarg = ops.cbam_spatial_pool_fwd(xd, cd)
        dx, dc, ds = ops.cbam_apply_bwd(gd, xd, cd, sd, True)
        return {"apply": ops.cbam_apply_fwd(xd, cd, sd), "spatial_pool": pooled, "spatial_argmax": sarg,
                "apply_backward dx": dx, "apply_backward dc": dc, "apply_backward ds": ds,
                "input_backward": ops.cbam_input_bwd(gd, cd, sd, gpd, am2.to(dev), gstd, am1.to(dev), True, True)}

    got, want, oracle = on("cuda"), on("cpu"), on("cpu", torch.float64)  # the oracle: the same values in float64
    for name, w in want.items():
        a = got[name].cpu()
        if name == "spatial_argmax":
            assert torch.equal(a, w) and torch.equal(a, oracle[name]), name
        else:
            assert_close_to_oracle(a, w, oracle[name], name, floor=ulp_floor(dtype, oracle[name]))


def test_gate_only_backward_ops_match_full():
    """input_grad=False returns an empty dx and the same gate gradients."""
    x, g = torch.randn(2, 5, 7, 6, dtype=torch.float64), torch.randn(2, 5, 7, 6, dtype=torch.float64)
    c, s = torch.rand(2, 5, dtype=torch.float64), torch.rand(2, 7, 6, dtype=torch.float64)
    _, am2 = ops.cbam_spatial_pool_fwd(x, c)
    gp = torch.randn(2, 2, 7, 6, dtype=torch.float64)
    full, gates = ops.cbam_apply_bwd(g, x, c, s), ops.cbam_apply_bwd(g, x, c, s, False)
    assert gates[0].numel() == 0
    assert_close(gates[1], full[1], "dc"), assert_close(gates[2], full[2], "ds")
    full, gates = ops.cbam_spatial_pool_bwd(gp, x, c, am2), ops.cbam_spatial_pool_bwd(gp, x, c, am2, False)
    assert gates[0].numel() == 0
    assert_close(gates[1], full[1], "dc")


@pytest.mark.parametrize("kind", ["cbam", "channel", "spatial"])
def test_per_pass_autograd_path(kind, monkeypatch):
    """The per-pass backward (used under torch.compile) still matches the reference in eager mode."""
    from srops.ops.cbam import ext_impl

    monkeypatch.setattr(ext_impl, "_fused_backward", lambda x: False)
    ref, fused = _pair(kind, 17, POOLS[0], True, True, False, True, torch.float64)
    _compare_modules(ref, fused, torch.randn(3, 17, 7, 5, dtype=torch.float64))


@pytest.mark.parametrize("op", ["channel_attention", "spatial_attention"])
def test_gradcheck_attention_end_to_end(op):
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 3)).double()
    conv = torch.nn.Conv2d(2, 1, 3, padding=1).double()
    layer = mlp if op == "channel_attention" else conv
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, *_):
        return getattr(F, op)(x, layer, backend="cpu")

    assert torch.autograd.gradcheck(fn, (x, *layer.parameters()))


def test_gates_ignoring_their_input():
    """An MLP and a conv that do not depend on the pooled maps: dx is still x·c·s's gradient alone."""
    x = torch.randn(2, 4, 5, 3, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    mlp = lambda p: bias.expand_as(p)  # noqa: E731
    conv = lambda p: torch.zeros_like(p[:, :1]) + bias[0]  # noqa: E731
    grads = []
    for backend in ("reference", "cpu"):
        xr = x.clone().requires_grad_()
        bias.grad = None
        out = F.cbam(xr, mlp, conv, backend=backend)
        out.backward(torch.ones_like(out))
        grads.append((out.detach(), xr.grad, bias.grad.clone()))
    for name, a, b in zip(("out", "x.grad", "bias.grad"), grads[1], grads[0]):
        assert_close(a, b, name)


def test_retained_graph_and_checkpoint():
    """A second backward through a retained graph, and activation checkpointing, give the same gradients."""
    ref, fused = _pair("cbam", 17, POOLS[0], False, True, False, False, torch.float64)
    x = torch.randn(3, 17, 7, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 17, 7, 5, dtype=torch.float64)
    out = fused(x)
    out.backward(g, retain_graph=True)
    first = x.grad.clone()
    x.grad = None
    out.backward(g)
    assert_close(x.grad, first, "x.grad (second backward)")
    x.grad = None
    torch.utils.checkpoint.checkpoint(fused, x, use_reentrant=False).backward(g)
    assert_close(x.grad, first, "x.grad (checkpointed)")
    xr = x.detach().clone().requires_grad_()
    ref(xr).backward(g)
    assert_close(first, xr.grad, "x.grad vs reference")


def _opcheck_cases(device: str) -> list:
    kw = dict(dtype=torch.float64, device=device)
    x = torch.randn(2, 5, 3, 4, **kw, requires_grad=True)
    c = torch.rand(2, 5, **kw, requires_grad=True)
    s = torch.rand(2, 3, 4, **kw, requires_grad=True)
    with torch.no_grad():
        _, am1 = ops.cbam_channel_pool_fwd(x, True, True)
        _, am2 = ops.cbam_spatial_pool_fwd(x, c)
    g = torch.randn(2, 5, 3, 4, **kw)
    return [
        (ops.cbam_channel_pool_fwd.default, (x, True, True)),
        (ops.cbam_channel_pool_fwd.default, (x, True, False)),
        (ops.cbam_channel_pool_bwd.default, (torch.randn(2, 5, 2, **kw), x.detach(), am1, True, True)),
        (ops.cbam_spatial_pool_fwd.default, (x, c)),
        (ops.cbam_spatial_pool_fwd.default, (x, None)),
        (ops.cbam_spatial_pool_bwd.default, (torch.randn(2, 2, 3, 4, **kw), x.detach(), c.detach(), am2)),
        (ops.cbam_apply_fwd.default, (x, c, s)),
        (ops.cbam_apply_fwd.default, (x, None, s)),
        (ops.cbam_apply_bwd.default, (g, x.detach(), c.detach(), s.detach())),
        (ops.cbam_apply_bwd.default, (g, x.detach(), c.detach(), None)),
        (ops.cbam_apply_bwd.default, (g, x.detach(), c.detach(), s.detach(), False)),
        (ops.cbam_spatial_pool_bwd.default, (torch.randn(2, 2, 3, 4, **kw), x.detach(), c.detach(), am2, False)),
        (ops.cbam_input_bwd.default, (g, c.detach(), s.detach(), torch.randn(2, 2, 3, 4, **kw), am2,
                                           torch.randn(2, 5, 2, **kw), am1, True, True)),
        (ops.cbam_input_bwd.default, (g, None, s.detach(), torch.randn(2, 2, 3, 4, **kw), am2, None, None,
                                           True, True)),
        (ops.cbam_input_bwd.default, (g, c.detach(), None, None, None, torch.randn(2, 5, 1, **kw), None,
                                           True, False)),
    ]


def test_opcheck_cpu():
    for op, args in _opcheck_cases("cpu"):
        torch.library.opcheck(op, args)


def test_backend_order_and_default():
    x = torch.randn(1, 4, 3, 3)
    for op in ("channel_attention", "spatial_attention", "cbam", "channel_gate", "spatial_gate"):
        assert _backend.default_order(op, "cpu") == ("cpu", "reference")
        assert _backend.default_order(op, "cuda") == ("cuda", "reference")
        assert _backend.select(op, (x,)).name == "cpu"


def test_bad_inputs():
    x = torch.randn(2, 4, 3, 3)
    mlp = torch.nn.Linear(4, 4)
    with pytest.raises(ValueError, match=r"srops\.cbam: 'x' must be a 4-D"):
        F.cbam(torch.randn(4, 3, 3), mlp, mlp, backend="cpu")
    with pytest.raises(TypeError, match=r"srops\.cbam: 'mlp' must be a callable"):
        F.cbam(x, 3, mlp, backend="cpu")
    with pytest.raises(ValueError, match=r"srops\.channel_attention: 'pool'"):
        F.channel_attention(x, mlp, ("avg", "min"), backend="cpu")
    with pytest.raises(ValueError, match=r"cbam_channel_pool_fwd: at least one of avg and max"):
        ops.cbam_channel_pool_fwd(x, False, False)
    with pytest.raises(TypeError, match=r"cbam_channel_pool_fwd: x must be float16"):
        ops.cbam_channel_pool_fwd(x.long(), True, True)
    with pytest.raises(ValueError, match=r"cbam_spatial_pool_fwd: x must be a 4-D"):
        ops.cbam_spatial_pool_fwd(x[0], None)
    with pytest.raises(ValueError, match=r"cbam_apply_fwd: c must have shape \[2, 4\], got \[2, 5\]"):
        ops.cbam_apply_fwd(x, torch.rand(2, 5), None)
    with pytest.raises(TypeError, match=r"cbam_apply_fwd: s must have dtype Float like x, got Double"):
        ops.cbam_apply_fwd(x, None, torch.rand(2, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"cbam_apply_fwd: x must be non-empty"):
        ops.cbam_apply_fwd(torch.randn(0, 4, 3, 3), None, None)
    with pytest.raises(ValueError, match=r"cbam_channel_pool_bwd: argmax must hold indices"):
        ops.cbam_channel_pool_bwd(torch.ones(2, 4, 1), x, torch.full((2, 4), 9), False, True)
    with pytest.raises(TypeError, match=r"cbam_spatial_pool_bwd: argmax must have dtype int64"):
        ops.cbam_spatial_pool_bwd(torch.ones(2, 2, 3, 3), x, None, torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match=r"cbam_apply_bwd: grad must have shape"):
        ops.cbam_apply_bwd(torch.ones(2, 4, 3, 4), x, None, None)
    am2 = torch.zeros(2, 3, 3, dtype=torch.long)
    with pytest.raises(ValueError, match=r"cbam_input_bwd: grad_pooled and spatial_argmax must be given together"):
        ops.cbam_input_bwd(x, None, None, torch.ones(2, 2, 3, 3), None, None, None, True, True)
    with pytest.raises(ValueError, match=r"cbam_input_bwd: spatial_argmax must hold channel indices"):
        ops.cbam_input_bwd(x, None, None, torch.ones(2, 2, 3, 3), am2 + 4, None, None, True, True)
    with pytest.raises(ValueError, match=r"cbam_input_bwd: channel_argmax must be given exactly when max"):
        ops.cbam_input_bwd(x, None, None, None, None, torch.ones(2, 4, 2), None, True, True)
    with pytest.raises(ValueError, match=r"cbam_input_bwd: grad_stats must have shape \[2, 4, 1\]"):
        ops.cbam_input_bwd(x, None, None, None, None, torch.ones(2, 4, 2), None, True, False)
    with pytest.raises(ValueError, match=r"cbam_input_bwd: channel_argmax must hold indices in \[0, H\*W\)"):
        ops.cbam_input_bwd(x, None, None, None, None, torch.ones(2, 4, 1), torch.full((2, 4), 9), False, True)
    with pytest.raises(TypeError, match=r"cbam_input_bwd: c must have dtype Float like x"):
        ops.cbam_input_bwd(x, torch.rand(2, 4, dtype=torch.float64), None, None, None, None, None, True, True)


# ---- CUDA kernels (run only where a GPU is visible) ---------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("pool", POOLS, ids=["avgmax", "avg"])
@pytest.mark.parametrize("shape", SHAPES + [(2, 64, 96, 130)], ids=lambda s: "x".join(map(str, s)))
def test_cuda_modules_float64(shape, pool, train):
    for kind in ("cbam", "channel", "spatial"):
        ref, fused = _pair(kind, shape[1], pool, True, True, False, train, torch.float64, "cuda", "cuda")
        _compare_modules(ref, fused, torch.randn(shape, dtype=torch.float64, device="cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("data", ["constant", "repeated"])
def test_cuda_ties(data):
    shape = (2, 17, 7, 5)
    x = torch.ones(shape) if data == "constant" else torch.randint(0, 3, shape).float()
    ref, fused = _pair("cbam", 17, POOLS[0], False, True, False, True, torch.float64, "cuda", "cuda")
    _zero_mlp(ref), _zero_mlp(fused)
    # CPU reference routing (first maximal element) is the contract; compare against it on CPU.
    ref_cpu = copy.deepcopy(ref).cpu()
    fused_cuda = fused
    xr, xf = x.double().requires_grad_(), x.double().cuda().requires_grad_()
    ref_cpu(xr).sum().backward()
    fused_cuda(xf).sum().backward()
    assert_close(xf.grad.cpu(), xr.grad, "x.grad")


@pytest.mark.gpu
@pytest.mark.parametrize("data", ["normal", "repeated", "nan"])
@pytest.mark.parametrize("shape", [(1, 3, 257, 263), (1, 64, 540, 96), (300, 300, 4, 4)], ids=lambda s: "x".join(map(str, s)))
def test_cuda_channel_pool_split_rows(shape, data):
    """Small B·C splits each row over several blocks (combined in order); the statistics and the first-maximum
    index must still equal the CPU kernel's, with ties and NaN."""
    x = torch.randn(shape, dtype=torch.float64) if data != "repeated" else torch.randint(0, 4, shape).double()
    if data == "nan":
        x.view(-1)[x.numel() // 2] = float("nan")
    for avg, mx in ((True, True), (False, True), (True, False)):
        stats_cpu, am_cpu = ops.cbam_channel_pool_fwd(x, avg, mx)
        stats_gpu, am_gpu = ops.cbam_channel_pool_fwd(x.cuda(), avg, mx)
        tol = float64_tolerance(shape[2] * shape[3])  # a mean over H·W values of scale 1, summed in another order
        torch.testing.assert_close(stats_gpu.cpu(), stats_cpu, equal_nan=True, **tol)
        assert torch.equal(am_gpu.cpu(), am_cpu)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_dtypes_forward(dtype):
    ref64, _ = _pair("cbam", 64, POOLS[0], False, True, False, False, torch.float64, "cuda", "reference")
    x = torch.randn(2, 64, 33, 47, device="cuda").to(dtype).double()
    low = copy.deepcopy(ref64).to(dtype)
    ref64 = copy.deepcopy(low).double()  # the oracle sees the rounded weights and input
    fused = copy.deepcopy(low)
    fused.backend = fused.channel.backend = fused.spatial.backend = "cuda"
    with torch.no_grad():
        oracle, torch_low, out = ref64(x), low(x.to(dtype)), fused(x.to(dtype))
    assert_low_precision_close(out, torch_low, oracle, "output")


@pytest.mark.gpu
def test_cuda_opcheck():
    for op, args in _opcheck_cases("cuda"):
        torch.library.opcheck(op, args)
