"""Stages 4 and 5 of the device check: timing against the peers, and the full-image call.

Stage 4 (``timing``) times, in one process and side by side, srops's Triton kernels and the peers a user
would pick for single-head attention: SDPA with its flash, cuDNN and memory-efficient kernels forced one
at a time, the eager reference and ``torch.compile(reference)``, forward and forward+backward, at
d = 32, 8 and 64 (bfloat16). Ratios are peer time / srops time (above 1: srops is faster); srops's rows
also give the fraction of the exp-unit bound (one MUFU.EX2 per score forward, ``BWD_EXPS`` per score in
the backward, 16 per SM per clock on sm_90 at the maximum SM clock). torch.compile is timed last, after
every other peer at every shape, as its compilations are the slowest part.

Stage 5 (``full_image``) runs the forward and the backward once at N = M = 518,400 (a 960×540 LR frame),
d = 32, bfloat16, checks 256 query rows of the output and of dq against float64, and the rest for NaN.
Dry run: CPU tensors, float32, tiny shapes, torch.compile with the ``eager`` backend.
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import time
from typing import Callable

import torch

from tools.gpu_check_common import CaseFailed, SkipCase, Stage
from tools.gpu_check_triton import rel_err, reference

EX2_PER_SM_CLOCK = 16  # MUFU.EX2 results per SM per clock on sm_90 (CUDA C++ guide, throughput table)
BWD_EXPS = 1  # exps per score in the backward: one pass recomputes p once for dQ, dK and dV together
SDPA = ("flash", "cudnn", "efficient")


def time_call(fn: Callable[[], object], device: str, warmup: int = 2, min_reps: int = 5,
              max_seconds: float = 0.5) -> dict:
    """Median time of ``fn()`` in ms: device events on CUDA (synchronised), the host clock on CPU.

    ``warmup`` untimed calls first (autotuning, compilation); then at least ``min_reps`` timed calls,
    more while ``max_seconds`` lasts (at most 100).
    """
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < max_seconds and len(times) < 100):
        if device == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "reps": len(times)}


def max_sm_clock_mhz() -> float:
    """The maximum SM clock from nvidia-smi; 1980 MHz (H100/H200 SXM) when it cannot be read."""
    if shutil.which("nvidia-smi"):
        try:
            res = subprocess.run(["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20)
            return float(res.stdout.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            pass
    return 1980.0


def exp_bound_ms(scores: float, exps_per_score: float, sms: int, clock_mhz: float) -> float:
    """Time the exp unit alone needs: scores · exps / (SMs · 16 · clock)."""
    return scores * exps_per_score / (sms * EX2_PER_SM_CLOCK * clock_mhz * 1e6) * 1e3


def peer_fn(name: str, dry: bool) -> Callable:
    """``f(q, k, v, scale)`` for a peer name: srops, flash/cudnn/efficient (SDPA forced), reference, compile."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from srops.functional import nonlocal_attention
    from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref

    if name == "srops":
        return lambda q, k, v, s: nonlocal_attention(q, k, v, s, backend="triton")
    if name in SDPA:
        kernel = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                  "efficient": SDPBackend.EFFICIENT_ATTENTION}[name]

        def sdpa(q, k, v, s):
            with sdpa_kernel([kernel]):
                return F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1),
                                                      scale=s).squeeze(1)
        return sdpa
    if name == "reference":
        return nonlocal_attention_ref
    if name == "compile":
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        return torch.compile(nonlocal_attention_ref, dynamic=False, backend="eager" if dry else "inductor")
    raise ValueError(f"unknown peer {name!r}")


def _inputs(shape, dtype, device, grad: bool):
    b, n, m, d = shape
    q, k, v = (torch.randn(b, x, d, device=device, dtype=dtype, requires_grad=grad) for x in (n, m, m))
    return q, k, v


def run_timing(stage: Stage) -> None:
    dry = stage.dry_run
    device, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.bfloat16)
    shapes = ({"tiny": (1, 48, 40, 8)} if dry else
              {"image 256x256 d=32": (1, 65536, 65536, 32), "patches 16x48x48 d=32": (16, 2304, 2304, 32),
               "image 256x256 d=8": (1, 65536, 65536, 8), "image 256x256 d=64": (1, 65536, 65536, 64)})
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        sms, clock = props.multi_processor_count, max_sm_clock_mhz()
    else:
        sms, clock = 1, 1000.0
    stage.info.update(sms=sms, clock_mhz=clock, dtype=str(dtype), bwd_exps_per_score=BWD_EXPS)
    reps = dict(warmup=1, min_reps=2, max_seconds=0.05) if dry else dict(warmup=2, min_reps=5, max_seconds=0.4)
    results: dict[tuple[str, str, str], float] = {}

    def one(rec: dict, label: str, peer: str, mode: str) -> None:
        b, n, m, d = shapes[label]
        if peer == "srops":
            from srops.ops.nonlocal_attention import triton_impl

            if triton_impl.TRITON_ERROR:
                raise SkipCase(triton_impl.TRITON_ERROR)
        if peer in SDPA and dry and peer != "flash":
            raise SkipCase(f"SDPA's {peer} kernel is CUDA-only")
        fn = peer_fn(peer, dry)
        q, k, v = _inputs(shapes[label], dtype, device, mode == "fwd+bwd")
        scale = d ** -0.5
        if mode == "fwd":
            def call():
                with torch.no_grad():
                    return fn(q, k, v, scale)
        else:
            g = torch.randn(b, n, d, device=device, dtype=dtype)

            def call():
                q.grad = k.grad = v.grad = None
                fn(q, k, v, scale).backward(g)
        try:
            t = time_call(call, device, **reps)
        except RuntimeError as exc:  # SDPA: "No available kernel", or out of memory
            if "No available kernel" in str(exc) or "out of memory" in str(exc):
                if device == "cuda":
                    torch.cuda.empty_cache()
                raise SkipCase(str(exc).splitlines()[0][:200]) from None
            raise
        rec.update(t)
        results[(label, peer, mode)] = t["median_ms"]
        if peer == "srops":
            exps = b * n * m * (1 if mode == "fwd" else 1 + BWD_EXPS)
            rec["exp_bound_fraction"] = round(exp_bound_ms(exps, 1, sms, clock) / t["median_ms"], 4)

    peers = ("srops", "flash", "cudnn", "efficient", "reference")
    for label in shapes:
        for mode in ("fwd", "fwd+bwd"):
            for peer in peers:
                stage.run(f"{label} {mode} {peer}", one, label, peer, mode, shape=label, peer=peer, mode=mode)
    for label in shapes:
        for mode in ("fwd", "fwd+bwd"):
            stage.run(f"{label} {mode} compile", one, label, "compile", mode, shape=label, peer="compile", mode=mode)
    ratios = {}
    for (label, peer, mode), ms in results.items():
        base = results.get((label, "srops", mode))
        if peer != "srops" and base:
            ratios[f"{label} {mode} {peer}/srops"] = round(ms / base, 3)
    stage.info["ratios"] = ratios
    first = next(iter(shapes))
    flash = ratios.get(f"{first} fwd flash/srops")
    frac = next((c.get("exp_bound_fraction") for c in stage.cases
                 if c.get("shape") == first and c.get("peer") == "srops" and c.get("mode") == "fwd"), None)
    stage.info["headline"] = f"{first} fwd: flash/srops {flash}, exp-bound fraction {frac}"


def run_full_image(stage: Stage) -> None:
    dry = stage.dry_run
    device, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.bfloat16)
    b, n, m, d = (1, 64, 64, 8) if dry else (1, 518_400, 518_400, 32)
    rows = 8 if dry else 256
    state: dict = {}
    stage.info.update(shape=[b, n, m, d], dtype=str(dtype))

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    def forward(rec: dict) -> None:
        from srops.ops.nonlocal_attention import triton_impl

        if triton_impl.TRITON_ERROR:
            raise SkipCase(triton_impl.TRITON_ERROR)
        gen = torch.Generator(device=device).manual_seed(0)
        q, k, v, g = (torch.randn(b, x, d, device=device, generator=gen).to(dtype) for x in (n, m, m, n))
        scale = d ** -0.5
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out, stats = torch.ops.srops.nonlocal_attention_triton_fwd(q, k, v, scale)
        sync()
        rec["first_call_s"] = round(time.perf_counter() - t0, 3)  # autotuning included
        if stage.time_left() > 10 or dry:
            rec.update(time_call(lambda: torch.ops.srops.nonlocal_attention_triton_fwd(q, k, v, scale), device,
                                 warmup=0, min_reps=1, max_seconds=0))
        state.update(q=q, k=k, v=v, g=g, out=out, stats=stats, scale=scale)
        idx = torch.randperm(n, device=device)[:rows]
        want = torch.softmax((q[:, idx].double() @ k.double().transpose(1, 2)) * scale, -1) @ v.double()
        rec["rows_rel_err"] = float(f"{rel_err(out[:, idx], want):.3e}")
        stage.check(bool(torch.isfinite(out).all()), "output holds NaN/inf")
        stage.check(rec["rows_rel_err"] <= 3e-2, f"sampled rows: rel. error {rec['rows_rel_err']:.3e} > 3e-2")

    def backward(rec: dict) -> None:
        if not state:
            raise SkipCase("the forward did not run")
        s = state
        t0 = time.perf_counter()
        dq, dk, dv = torch.ops.srops.nonlocal_attention_triton_bwd(s["g"], s["q"], s["k"], s["v"], s["out"], s["stats"],
                                                          s["scale"])
        sync()
        rec["first_call_s"] = round(time.perf_counter() - t0, 3)
        if device == "cuda":
            rec["peak_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        for name, t in (("dq", dq), ("dk", dk), ("dv", dv)):
            if not torch.isfinite(t).all():
                raise CaseFailed(f"{name} holds NaN/inf")
        idx = torch.randperm(n, device=device)[:rows]
        _, dq_ref, _, _ = reference(s["q"][:, idx], s["k"], s["v"], s["g"][:, idx], s["scale"])
        rec["dq_rows_rel_err"] = float(f"{rel_err(dq[:, idx], dq_ref):.3e}")
        stage.check(rec["dq_rows_rel_err"] <= 5e-2, f"dq rows: rel. error {rec['dq_rows_rel_err']:.3e} > 5e-2")

    fwd = stage.run("forward N=M=518400 d=32", forward)
    bwd = stage.run("backward N=M=518400 d=32", backward)
    def ms(rec: dict) -> str:
        return f"{rec['median_ms']:.1f} ms" if "median_ms" in rec else rec.get("status", "?")

    stage.info["headline"] = (f"fwd {ms(fwd)} (first call {fwd.get('first_call_s', '?')} s), "
                              f"bwd first call {bwd.get('first_call_s', '?')} s, rows rel. err "
                              f"{fwd.get('rows_rel_err', '?')} / dq {bwd.get('dq_rows_rel_err', '?')}")
