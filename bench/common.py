"""Timing and peak-memory helpers for the benchmarks."""
from __future__ import annotations

import functools
import os
import time
import warnings
from typing import Callable, Sequence

import pytest
import torch

from bench.shapes import pick
from srops import _backend
from srops.info import environment
from srops.profiling import peak_memory_mb

COMPILED = "compile(reference)"


@functools.lru_cache(maxsize=1)
def env_info() -> dict[str, str]:
    return environment()


def select_shape(shape: str, gpu: dict, cpu: dict, smoke_shapes: dict, device: torch.device, smoke: bool) -> dict:
    """The parameters of ``shape`` for this run (GPU, CPU or smoke table), or skip it with the reason."""
    shapes = pick(gpu, cpu, smoke_shapes, device.type, smoke)
    if shape not in shapes:
        pytest.skip(f"shape {shape} is not benchmarked on {device.type}{' (smoke run)' if smoke else ''}")
    return shapes[shape]


def backend_params(op: str, device: torch.device, extra: Sequence[str] = (COMPILED,)) -> list:
    """pytest params over the op's backends (plus ``extra`` peers); those that cannot run here are skipped
    with their reason."""
    params = []
    names = [n for n in _backend.BACKEND_NAMES if n in _backend._OPS[op].backends] + list(extra)
    for name in names:
        reason = None
        if name != COMPILED:
            reason = _backend._OPS[op].backends[name].device_reason(device.type)
        marks = [pytest.mark.skip(reason=f"{name}: {reason}")] if reason else []
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def make_callable(
    fn: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], mode: str
) -> Callable[[], object]:
    """A zero-argument call of ``fn(*inputs)``: forward only, or forward + backward of a fixed gradient."""
    if mode == "fwd":
        def run() -> object:
            with torch.no_grad():
                return fn(*inputs)
        return run
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    out = fn(*inputs)
    grad = torch.randn_like(out)

    def run_bwd() -> object:
        for t in leaves:
            t.grad = None
        y = fn(*inputs)
        y.backward(grad)
        return y

    return run_bwd


def compiled(fn: Callable) -> Callable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.compile(fn, dynamic=False)


def run_benchmark(benchmark, call: Callable[[], object], device: torch.device, group: str, **info) -> None:
    """Time ``call`` (synchronising on CUDA) and record peak memory and environment in extra_info."""
    if device.type == "cuda":
        def timed() -> None:
            call()
            torch.cuda.synchronize()
    else:
        timed = call
    # Warm-up (autotuning, compilation, and on CPU the first faults of fresh huge pages, which can take
    # several times a steady call): at least 3 calls and 0.5 s (--bench-full), else 2 calls and 0.2 s;
    # at most 20 calls.
    full = os.environ.get("_SROPS_BENCH_FULL", "1") == "1"
    min_calls, min_s = (3, 0.5) if full else (2, 0.2)
    start, calls = time.perf_counter(), 0
    while calls < min_calls or (time.perf_counter() - start < min_s and calls < 20):
        timed()
        calls += 1
    benchmark.group = group
    benchmark.extra_info.update(info)
    benchmark.extra_info["peak_mb"] = round(peak_memory_mb(call, device), 3)
    benchmark.extra_info.update(env_info())
    benchmark.extra_info["allocator"] = os.environ.get("_SROPS_BENCH_ALLOCATOR", "default")
    benchmark(timed)
