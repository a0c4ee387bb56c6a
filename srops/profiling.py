"""Peak-memory measurement used by the benchmarks and the demo."""
from __future__ import annotations

import time
from typing import Callable

import torch


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of live bytes allocated by torch on the CPU during ``fn()``, from the profiler's memory events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    deltas = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    )
    live = peak = 0
    for _, nbytes in deltas:
        live += nbytes
        peak = max(peak, live)
    return peak


def peak_memory_mb(fn: Callable[[], object], device: torch.device | str) -> float:
    """Extra memory (MB) at the peak of one call of ``fn``, beyond what was allocated before it.

    CUDA: from the caching allocator's peak statistics. CPU: from torch profiler
    memory events (tensor allocations only).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return _cpu_peak_bytes(fn) / 2**20


def median_time_ms(fn: Callable[[], object], device: torch.device | str, repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call, synchronising on CUDA."""
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]
