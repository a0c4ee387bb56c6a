"""covpool: every backend vs reference vs torch.compile(reference), fwd and fwd+bwd."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from bench.common import COMPILED, backend_params, compiled, make_callable, run_benchmark, select_shape
from bench.shapes import COVPOOL_CPU, COVPOOL_GPU, COVPOOL_SMOKE
from srops.ops.covpool.reference import covpool_ref

OP = "covpool"
ALL_SHAPES = sorted(set(COVPOOL_GPU) | set(COVPOOL_CPU) | set(COVPOOL_SMOKE))


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
@pytest.mark.parametrize("backend", backend_params(OP, torch.device("cuda" if torch.cuda.is_available() else "cpu")))
def test_covpool(benchmark, device, smoke, backend, shape, mode):
    s = select_shape(shape, COVPOOL_GPU, COVPOOL_CPU, COVPOOL_SMOKE, device, smoke)
    x = torch.randn(s["B"], s["C"], s["H"] * s["W"], device=device, requires_grad=mode == "fwd+bwd")
    if backend == COMPILED:
        fn = compiled(covpool_ref)
    else:
        fn = lambda t: F.covpool(t, backend=backend)  # noqa: E731
    call = make_callable(fn, (x,), mode)
    run_benchmark(benchmark, call, device, group=f"{OP} {shape} {mode}", backend=backend, shape=shape,
                  mode=mode, dtype=str(x.dtype), **s)
