"""torch.compile of every module with dynamic shapes, over several input sizes, against eager.

Fast representative cases always run; the full module × backend sweep is marked slow (Inductor
compiles take tens of seconds each on a small CPU machine).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo

import srops.functional as F
from srops import CBAM, NonLocal2d, SecondOrderAttention, SpatialAttention, ChannelAttention, _ext
from srops.testing import assert_close_to_oracle, ulp_floor

pytestmark = pytest.mark.compile

SIZES = [(2, 12, 10), (1, 9, 13), (3, 16, 16)]


def _modules(backend: str) -> dict[str, torch.nn.Module]:
    return {
        "NonLocal2d": NonLocal2d(8, 4, regions=2, bn=True, backend=backend),
        "SecondOrderAttention": SecondOrderAttention(8, reduction=2, backend=backend),
        "CBAM": CBAM(8, reduction=2, backend=backend),
        "ChannelAttention": ChannelAttention(8, reduction=2, backend=backend),
        "SpatialAttention": SpatialAttention(backend=backend),
    }


def _check(name: str, backend: str, dynamic: bool | None, fullgraph: bool = True) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    module = _modules(backend)[name].eval()
    if name == "NonLocal2d":
        with torch.no_grad():
            module.bn.weight.fill_(0.7)  # not the identity
    _compare_compiled(module, dynamic, fullgraph)


def _compare_compiled(module: torch.nn.Module, dynamic: bool | None, fullgraph: bool) -> None:
    """The compiled module against eager over SIZES: outputs and input gradients, both compared with the
    eager module in float64 on the same inputs (compiled at most twice eager's float32 error, plus 8 ulp)."""
    compiled = torch.compile(module, dynamic=dynamic, fullgraph=fullgraph)
    oracle = copy.deepcopy(module).double()
    for b, h, w in SIZES:
        x = torch.randn(b, 8, h, w, requires_grad=True)
        xc, xo = x.detach().clone().requires_grad_(), x.detach().double().requires_grad_()
        y, yc, yo = module(x), compiled(xc), oracle(xo)
        assert_close_to_oracle(yc, y, yo, "output", floor=ulp_floor(torch.float32, yo))
        g = torch.randn_like(y)
        y.backward(g)
        yc.backward(g)
        yo.backward(g.double())
        assert_close_to_oracle(xc.grad, x.grad, xo.grad, "x.grad", floor=ulp_floor(torch.float32, xo.grad))


# (module, backend) pairs whose backends register ops with torch.library, plus NonLocal2d's. NonLocal2d on
# sdpa with dynamic=True over even, uneven and 1×1-pooled regions: tests/nn/test_nonlocal2d.py.
CASES = [("NonLocal2d", "sdpa"), ("NonLocal2d", "reference")]
if _ext.HAS_EXT:
    CASES += [("SecondOrderAttention", "cpu"), ("CBAM", "cpu"), ("ChannelAttention", "cpu"),
              ("SpatialAttention", "cpu")]
FAST = {("SecondOrderAttention", "cpu")}


@pytest.mark.parametrize("name, backend", sorted(FAST & set(CASES)))
def test_compile_dynamic_true_fast(name, backend):
    _check(name, backend, dynamic=True)


@pytest.mark.slow
@pytest.mark.parametrize("dynamic", [True, None])
@pytest.mark.parametrize("name, backend", sorted(set(CASES) - FAST))
def test_compile_dynamic_sweep(name, backend, dynamic):
    _check(name, backend, dynamic=dynamic)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [dict(regions=1), dict(regions=(1, 2)), dict(regions=(2, 1)), dict(regions=2, sub_sample="before"),
     dict(regions=2, sub_sample=False), dict(regions=2, inter_channels=1)],
    ids=["regions1", "regions1x2", "regions2x1", "before", "no_sub_sample", "d1"],
)
def test_compile_dynamic_true_nonlocal2d_variants(kwargs):
    """The other region layouts and key/value pools of NonLocal2d, compiled with dynamic shapes."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    module = NonLocal2d(8, **{"inter_channels": 4, "bn": True, "backend": "sdpa", **kwargs}).eval()
    with torch.no_grad():
        module.bn.weight.fill_(0.7)
    _compare_compiled(module, dynamic=True, fullgraph=True)


@pytest.mark.slow
@pytest.mark.parametrize("name, backend", sorted(FAST & set(CASES)))
def test_compile_automatic_dynamic(name, backend):
    """dynamic=None: the second size recompiles with dynamic shapes (evaluation over varied images)."""
    _check(name, backend, dynamic=None)


@pytest.mark.parametrize("op", ["covpool_sqrtm", "nonlocal_attention"])
def test_compile_dynamic_true_functional_with_float_argument(op):
    """dynamic=True traces float arguments symbolically: the argument checks must accept them."""
    torch._dynamo.reset()
    if op == "covpool_sqrtm":
        fn = lambda x, eps: F.covpool_sqrtm(x, 3, eps, backend="reference")  # noqa: E731
        args = [(torch.randn(2, 3, 5, 4), 1e-5), (torch.randn(1, 3, 7, 6), 1e-3)]
    else:
        fn = lambda x, scale: F.nonlocal_attention(x, x, x, scale, backend="reference")  # noqa: E731
        args = [(torch.randn(2, 5, 3), 0.5), (torch.randn(1, 7, 3), 0.25)]
    compiled = torch.compile(fn, dynamic=True, fullgraph=True)
    for x, f in args:
        oracle = fn(x.double(), f)
        assert_close_to_oracle(compiled(x, f), fn(x, f), oracle, op, floor=ulp_floor(torch.float32, oracle))
