"""Scaling of non-local attention with the number of positions N (= M, d = 32, B = 1, forward).

From 1k to 500k positions (32² … 960×540). Each backend stops where it would run
out of memory (the reference stores N² scores) or, on CPU, where one call would
take too long; the skip says which. On a GPU, an actual out-of-memory error is
caught and reported as a skip.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import srops.functional as F
from bench.common import backend_params, make_callable, run_benchmark

SIDES = {"32x32": 32 * 32, "64x64": 64 * 64, "128x128": 128 * 128, "256x256": 256 * 256,
         "512x512": 512 * 512, "960x540": 960 * 540}
SMOKE_SIDES = {"8x8": 64, "16x16": 256}
D = 32
CPU_FLOP_BUDGET = 6e10  # one forward call: 4·N²·d FLOPs


def memory_budget(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(0).total_memory
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable"):
            return int(line.split()[1]) * 1024 // 2
    return 4 * 2**30


@pytest.mark.parametrize("size", sorted(SIDES) + sorted(SMOKE_SIDES))
@pytest.mark.parametrize("backend", backend_params("nonlocal_attention",
                                                    torch.device("cuda" if torch.cuda.is_available() else "cpu"),
                                                    extra=()))
def test_scaling(benchmark, device, smoke, backend, size):
    sides = SMOKE_SIDES if smoke else SIDES
    if size not in sides:
        pytest.skip(f"{size} is not in this run's sizes")
    if device.type == "cpu" and backend == "triton":
        pytest.skip("triton on CPU runs in the interpreter: not a performance path")
    n = sides[size]
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    esize = torch.finfo(dtype).bits // 8
    stored = n * n * esize if backend == "reference" else 0
    if stored > memory_budget(device):
        pytest.skip(f"out of memory: {backend} at N={n} would store {stored / 2**30:.0f} GiB of scores")
    if device.type == "cpu" and 4 * n * n * D > CPU_FLOP_BUDGET:
        pytest.skip(f"too slow on CPU: N={n} is {4 * n * n * D / 1e9:.0f} GFLOP per call")
    q, k, v = (torch.randn(1, n, D, device=device, dtype=dtype) for _ in range(3))
    call = make_callable(lambda a, b, c: F.nonlocal_attention(a, b, c, 1.0, backend=backend), (q, k, v), "fwd")
    try:
        run_benchmark(benchmark, call, device, group=f"scaling nonlocal_attention {size}", backend=backend,
                      shape=size, mode="fwd", N=n, M=n, d=D, dtype=str(dtype))
    except torch.OutOfMemoryError:
        pytest.skip(f"out of memory: {backend} at N={n}")
