"""How close the CPU non-local kernels come to the machine's limits, measured on the machine itself.

Peaks (one process, the threads torch uses):
  - FLOP peak: float32 GEMM through torch.mm (the platform BLAS) at 1024×1024×1024, best of the rounds:
    what a well-tuned kernel reaches on these cores, not the datasheet's figure;
  - exp peak: torch.exp (ATen's vectorised exp) over 16,384 float32 values that stay in the L1/L2 cache,
    best of the rounds, in exps per second.
The `cpu` backend of nonlocal_attention is then timed forward (median of the rounds) at the SR shapes with
d = 8 to 32; its work is 4·B·N·M·d FLOPs (scores and weighted sum) and B·N·M exps. Reported: the achieved
FLOP rate as a fraction of the GEMM peak, and the exp rate against torch.exp's. The kernels' exp is a
cheaper polynomial (about 1 ulp) than ATen's, so the exp ratio can pass 1: it says how much of the time the
exps alone would take at ATen's rate, not a hardware bound.

Then forward+backward (autograd, the three input gradients): a flash backward recomputes the scores, so the
pair does 7 products of 2·B·N·M·d FLOPs (scores, weighted sum; scores again, dv, dP, dq, dk) and 2·B·N·M exps.
Reported beside it: the reference's forward+backward time and ``bound``, the reference's time over the time of
those 7 products at the GEMM peak, the largest speed-up over the reference any flash kernel could reach on
this machine without running faster than its GEMM.

The allocator is tuned as in ``make bench`` (bench/allocator.py).

    python -m tools.cpu_peaks [--threads 2] [--rounds 15]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
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

SHAPES = {"train-regions-d8": NONLOCAL_CPU["train-regions-d8"], "train-regions": NONLOCAL_CPU["train-regions"],
          "amms-region": dict(B=32, N=144, M=36, d=16), "train-full": NONLOCAL_CPU["train-full"]}


def _times(fn, rounds: int) -> list[float]:
    fn()
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def flop_peak(rounds: int) -> float:
    a, b, c = torch.randn(1024, 1024), torch.randn(1024, 1024), torch.empty(1024, 1024)
    return 2 * 1024 ** 3 / min(_times(lambda: torch.mm(a, b, out=c), rounds))


def exp_peak(rounds: int) -> float:
    x, y = torch.randn(16384) - 3, torch.empty(16384)
    reps = 200

    def run():
        for _ in range(reps):
            torch.exp(x, out=y)

    return reps * x.numel() / min(_times(run, rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memory = allocator.keep_freed_memory()
    peak_f, peak_e = flop_peak(args.rounds), exp_peak(args.rounds)
    print(f"threads={args.threads} torch={torch.__version__} capability={torch.backends.cpu.get_cpu_capability()} "
          f"allocator: {memory}")
    print(f"FLOP peak (float32 GEMM): {peak_f / 1e9:.1f} GFLOP/s; exp peak (torch.exp): {peak_e / 1e9:.2f} Gexp/s")
    print(f"{'shape':18} {'ms':>8} {'GFLOP/s':>9} {'of GEMM peak':>13} {'Gexp/s':>8} {'vs torch.exp':>13}")
    gen = torch.Generator().manual_seed(0)
    for name, s in SHAPES.items():
        B, N, M, d = s["B"], s["N"], s["M"], s["d"]
        q, k, v = (torch.randn(B, r, d, generator=gen) for r in (N, M, M))
        with torch.no_grad():
            t = statistics.median(_times(lambda: F.nonlocal_attention(q, k, v, backend="cpu"), args.rounds))
        flops, exps = 4 * B * N * M * d / t, B * N * M / t
        print(f"{name:18} {t * 1e3:8.3f} {flops / 1e9:9.1f} {flops / peak_f:13.2f} {exps / 1e9:8.2f} "
              f"{exps / peak_e:13.2f}", flush=True)
    print(f"\nforward+backward\n{'shape':18} {'ms':>8} {'GFLOP/s':>9} {'of GEMM peak':>13} {'reference ms':>13} "
          f"{'speed-up':>9} {'bound':>6}")
    gen = torch.Generator().manual_seed(0)
    for name, s in SHAPES.items():
        B, N, M, d = s["B"], s["N"], s["M"], s["d"]
        q, k, v, g = (torch.randn(B, r, d, generator=gen) for r in (N, M, M, N))
        q, k, v = (t.requires_grad_() for t in (q, k, v))

        def fwd_bwd(fn):
            return lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), g)

        t = statistics.median(_times(fwd_bwd(lambda a, b, c: F.nonlocal_attention(a, b, c, backend="cpu")),
                                     args.rounds))
        t_ref = statistics.median(_times(fwd_bwd(lambda a, b, c: nonlocal_attention_ref(a, b, c, 1.0)), args.rounds))
        work = 14 * B * N * M * d
        print(f"{name:18} {t * 1e3:8.3f} {work / t / 1e9:9.1f} {work / t / peak_f:13.2f} {t_ref * 1e3:13.3f} "
              f"{t_ref / t:9.2f} {t_ref / (work / peak_f):6.2f}", flush=True)


if __name__ == "__main__":
    main()
