"""nonlocal_attention: every backend vs reference vs torch.compile(reference), fwd and fwd+bwd."""
from __future__ import annotations

import pytest
import torch

import srops.functional as F
from bench.common import COMPILED, backend_params, compiled, make_callable, run_benchmark, select_shape
from bench.shapes import NONLOCAL_CPU, NONLOCAL_GPU, NONLOCAL_SMOKE
from srops import _ext
from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref

OP = "nonlocal_attention"
ALL_SHAPES = sorted(set(NONLOCAL_GPU) | set(NONLOCAL_CPU) | set(NONLOCAL_SMOKE))
REF_LIMIT_BYTES = 8 * 2**30  # the reference materialises B·N·M scores (twice with autograd)
INTERPRETER_SKIP = (
    "triton on CPU tensors runs in the Triton interpreter (TRITON_INTERPRET=1), a correctness tool, "
    "not a CPU kernel: only the --smoke harness run includes it"
)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
@pytest.mark.parametrize("backend", backend_params(OP, torch.device("cuda" if torch.cuda.is_available() else "cpu")))
def test_nonlocal_attention(benchmark, device, smoke, backend, shape, mode):
    s = select_shape(shape, NONLOCAL_GPU, NONLOCAL_CPU, NONLOCAL_SMOKE, device, smoke)
    if backend == "triton" and device.type == "cpu" and not smoke:
        pytest.skip(INTERPRETER_SKIP)
    score_bytes = s["B"] * s["N"] * s["M"] * 4 * (2 if mode == "fwd+bwd" else 1)
    if backend in ("reference", COMPILED) and score_bytes > REF_LIMIT_BYTES:
        pytest.skip(f"{backend} would materialise {score_bytes / 2**30:.0f} GiB of scores")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    grad = mode == "fwd+bwd"
    q = torch.randn(s["B"], s["N"], s["d"], device=device, dtype=dtype, requires_grad=grad)
    k = torch.randn(s["B"], s["M"], s["d"], device=device, dtype=dtype, requires_grad=grad)
    v = torch.randn(s["B"], s["M"], s["d"], device=device, dtype=dtype, requires_grad=grad)
    scale = s["d"] ** -0.5
    if backend == COMPILED:
        fn = compiled(lambda a, b, c: nonlocal_attention_ref(a, b, c, scale))
    else:
        fn = lambda a, b, c: F.nonlocal_attention(a, b, c, scale, backend=backend)  # noqa: E731
    call = make_callable(fn, (q, k, v), mode)
    run_benchmark(benchmark, call, device, group=f"{OP} {shape} {mode}", backend=backend, shape=shape,
                  mode=mode, dtype=str(dtype), **s)


#: AMMS's region attention in the CPU demo: batch 8 × 4 regions of 12×12 queries, 6×6 pooled keys, d = 16.
AMMS_REGION = dict(B=32, N=144, M=36, d=16)


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("backend", ["cpu", "sdpa", "reference", "torch-sdpa-bf16"])
def test_nonlocal_attention_cpu_bf16(benchmark, smoke, backend, mode):
    """bf16 on CPU: srops' cpu and sdpa backends (float32 inside, one rounding) and the reference (bf16
    matmuls) against PyTorch's SDPA called on the bf16 tensors as they are."""
    s = NONLOCAL_SMOKE["smoke"] if smoke else AMMS_REGION
    grad = mode == "fwd+bwd"
    q, k, v = (torch.randn(s["B"], n, s["d"], dtype=torch.bfloat16, requires_grad=grad)
               for n in (s["N"], s["M"], s["M"]))
    if backend in ("cpu", "sdpa", "reference"):
        if backend == "cpu" and not _ext.has_kernel("nonlocal_attention_fwd", "CPU"):
            pytest.skip("srops._C has no CPU nonlocal_attention kernel")
        fn = lambda a, b, c: F.nonlocal_attention(a, b, c, 1.0, backend=backend)  # noqa: E731
    else:
        fn = lambda a, b, c: torch.nn.functional.scaled_dot_product_attention(  # noqa: E731
            a.unsqueeze(1), b.unsqueeze(1), c.unsqueeze(1), scale=1.0).squeeze(1)
    call = make_callable(fn, (q, k, v), mode)
    run_benchmark(benchmark, call, torch.device("cpu"), group=f"{OP} cpu-bf16 amms-region {mode}", backend=backend,
                  shape="amms-region", mode=mode, dtype="torch.bfloat16", **s)
