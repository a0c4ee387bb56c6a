"""CBAM module (official semantics): fused backend vs reference vs torch.compile(reference).

Training shapes run the module in train mode (BatchNorm batch statistics), forward and
forward+backward; inference shapes run it in eval mode, forward only. On a GPU, extra_info also
carries the effective bandwidth: the minimal traffic (fwd: read x, write out; fwd+bwd: that plus
read grad, read x, write dx) over the median time (the report's "effective GB/s" column).
"""
from __future__ import annotations

import copy

import pytest
import torch

from bench.common import COMPILED, backend_params, compiled, make_callable, run_benchmark, select_shape
from bench.shapes import CBAM_CPU, CBAM_GPU, CBAM_SMOKE, INFERENCE_PREFIX
from srops.nn.cbam import CBAM

OP = "cbam"
ALL_SHAPES = sorted(set(CBAM_GPU) | set(CBAM_CPU) | set(CBAM_SMOKE))


def _module(C: int, backend: str, train: bool, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    module = CBAM(C, backend=backend).to(device)
    return module.train(train)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
@pytest.mark.parametrize("backend", backend_params(OP, torch.device("cuda" if torch.cuda.is_available() else "cpu")))
def test_cbam(benchmark, device, smoke, backend, shape, mode):
    s = select_shape(shape, CBAM_GPU, CBAM_CPU, CBAM_SMOKE, device, smoke)
    train = not shape.startswith(INFERENCE_PREFIX)
    if mode == "fwd+bwd" and not train:
        pytest.skip("inference shapes are benchmarked forward only")
    module = _module(s["C"], "reference" if backend == COMPILED else backend, train, device)
    fn = compiled(copy.deepcopy(module)) if backend == COMPILED else module
    x = torch.randn(s["B"], s["C"], s["H"], s["W"], device=device, requires_grad=mode == "fwd+bwd")
    call = make_callable(fn, (x,), mode)
    run_benchmark(benchmark, call, device, group=f"{OP} {shape} {mode}", backend=backend, shape=shape,
                  mode=mode, dtype=str(x.dtype), train=train, **s)
    if device.type == "cuda" and benchmark.stats is not None:
        moved = x.numel() * x.element_size() * (2 if mode == "fwd" else 5)
        benchmark.extra_info["min_bytes"] = moved
        benchmark.extra_info["effective_GBps"] = round(moved / benchmark.stats.stats.median / 1e9, 1)
