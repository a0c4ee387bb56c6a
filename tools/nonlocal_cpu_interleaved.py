"""Interleaved CPU timing of nonlocal_attention's backends, for a machine shared with other work.

Each round times every (backend, mode) once, in turn, so load changes hit all alike; the table gives
the median over rounds (and the ratio of the better of ``reference`` and ``compile(reference)`` to
``cpu``). Usage::

    python -m tools.nonlocal_cpu_interleaved --threads 2 --rounds 15 [--shapes train-regions,...] [--clock cpu]

The allocator is tuned as in ``make bench`` (bench/allocator.py; ``SROPS_BENCH_TUNED_ALLOCATOR=0`` leaves
it untuned). ``--clock cpu`` times with the process's CPU time instead of the wall clock: with one thread it
discounts the time other processes hold the core (on a loaded machine the wall clock mostly measures
the load); with several threads it counts every thread's time, spinning included.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as python tools/<script>.py: bench/ (allocator, shapes) is a sibling
    sys.path.insert(0, str(ROOT))

from bench import allocator  # noqa: E402

allocator.prepare()  # before torch is imported

import torch  # noqa: E402

import srops.functional as F  # noqa: E402
from bench.shapes import NONLOCAL_CPU  # noqa: E402
from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref  # noqa: E402

SHAPES = {**NONLOCAL_CPU, "amms-region": dict(B=32, N=144, M=36, d=16)}
BACKENDS = ("cpu", "sdpa", "reference", "compile(reference)")


def _fn(backend: str, scale: float):
    if backend == "compile(reference)":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.compile(lambda a, b, c: nonlocal_attention_ref(a, b, c, scale), dynamic=False)
    if backend == "reference":
        return lambda a, b, c: nonlocal_attention_ref(a, b, c, scale)
    return lambda a, b, c: F.nonlocal_attention(a, b, c, scale, backend=backend)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def _timed(fn, q, k, v, g, mode: str, clock=time.perf_counter) -> float:
    start = clock()
    if mode == "fwd":
        with torch.no_grad():
            fn(q, k, v)
    else:
        for t in (q, k, v):
            t.grad = None
        fn(q, k, v).backward(g)
    return clock() - start


def measure(shape: str, dtype: torch.dtype, rounds: int, backends=BACKENDS, clock: str = "wall") -> dict:
    s = SHAPES[shape]
    # Dynamo caches compiled code per code object: the compile(reference) lambda is one code object for
    # every case, so without a reset the cases' recompilations add up to the recompile limit and the later
    # cases silently time the eager reference under the compile(reference) label.
    torch._dynamo.reset()
    torch.manual_seed(0)
    q, k, v = (torch.randn(s["B"], n, s["d"], dtype=dtype, requires_grad=True) for n in (s["N"], s["M"], s["M"]))
    g = torch.randn(s["B"], s["N"], s["d"], dtype=dtype)
    fns = {b: _fn(b, s["d"] ** -0.5) for b in backends}
    times: dict = {(b, m): [] for b in backends for m in ("fwd", "fwd+bwd")}
    for key in times:  # warm-up (and compilation)
        _timed(fns[key[0]], q, k, v, g, key[1])
    for _ in range(rounds):
        for key in times:
            times[key].append(_timed(fns[key[0]], q, k, v, g, key[1], CLOCK[clock]))
    return {key: statistics.median(t) for key, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--shapes", default="train-regions,train-regions-d8,train-full,amms-region")
    parser.add_argument("--bf16", action="store_true", help="also time amms-region in bfloat16")
    parser.add_argument("--clock", choices=sorted(CLOCK), default="wall")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memory = allocator.keep_freed_memory()
    cases = [(s, torch.float32) for s in args.shapes.split(",")]
    if args.bf16:
        cases.append(("amms-region", torch.bfloat16))
    print(f"threads={args.threads} rounds={args.rounds} clock={args.clock} "
          f"capability={torch.backends.cpu.get_cpu_capability()} torch={torch.__version__} allocator: {memory}")
    print(f"{'shape':18} {'dtype':9} {'mode':8} " + " ".join(f"{b:>19}" for b in BACKENDS)
          + "   best-ref/cpu  sdpa/cpu")
    for shape, dtype in cases:
        res = measure(shape, dtype, args.rounds, clock=args.clock)
        for mode in ("fwd", "fwd+bwd"):
            ms = {b: res[(b, mode)] * 1e3 for b in BACKENDS}
            best_ref = min(ms["reference"], ms["compile(reference)"])
            print(f"{shape:18} {str(dtype)[6:]:9} {mode:8} " + " ".join(f"{ms[b]:16.2f} ms" for b in BACKENDS)
                  + f"   {best_ref / ms['cpu']:11.2f}x {ms['sdpa'] / ms['cpu']:8.2f}x", flush=True)


if __name__ == "__main__":
    main()
