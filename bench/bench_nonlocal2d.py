"""NonLocal2d (SAN's region-level block) on every attention backend, and the module under torch.compile.

Training patches are timed forward and forward + backward; full-image inference forward only, under
``no_grad``. float16 on CUDA, float32 on CPU. Backends that would materialise more score memory than
``REF_LIMIT_BYTES`` are skipped with the figure.
"""
from __future__ import annotations

import pytest
import torch

from bench.common import COMPILED, backend_params, compiled, make_callable, run_benchmark, select_shape
from bench.shapes import (
    INFERENCE_PREFIX, NONLOCAL2D_CONFIG, NONLOCAL2D_CPU, NONLOCAL2D_GPU, NONLOCAL2D_SMOKE,
)
from srops import NonLocal2d
from srops.ops.nonlocal_attention.regions import spans

OP = "nonlocal_attention"
ALL_SHAPES = sorted(set(NONLOCAL2D_GPU) | set(NONLOCAL2D_CPU) | set(NONLOCAL2D_SMOKE))
REF_LIMIT_BYTES = 8 * 2**30
INTERPRETER_SKIP = (
    "triton on CPU tensors runs in the Triton interpreter (TRITON_INTERPRET=1), a correctness tool, "
    "not a CPU kernel: only the --smoke harness run includes it"
)


def score_bytes(s: dict, itemsize: int) -> int:
    """Bytes of the [B·regions, N, M] score matrices the reference backend materialises at once (largest tile)."""
    rh, rw = (NONLOCAL2D_CONFIG["regions"],) * 2
    h = max(t for _, _, _, t in spans(s["H"], rh))
    w = max(t for _, _, _, t in spans(s["W"], rw))
    n, m = h * w, (h // 2) * (w // 2)
    return s["B"] * rh * rw * n * m * itemsize


@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("shape", ALL_SHAPES)
@pytest.mark.parametrize("backend", backend_params(OP, torch.device("cuda" if torch.cuda.is_available() else "cpu")))
def test_nonlocal2d(benchmark, device, smoke, backend, shape, mode):
    s = select_shape(shape, NONLOCAL2D_GPU, NONLOCAL2D_CPU, NONLOCAL2D_SMOKE, device, smoke)
    if shape.startswith(INFERENCE_PREFIX) and mode != "fwd":
        pytest.skip("inference shapes are timed forward-only")
    if backend == "triton" and device.type == "cpu" and not smoke:
        pytest.skip(INTERPRETER_SKIP)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    if backend in ("reference", COMPILED):
        need = score_bytes(s, 4) * (2 if mode == "fwd+bwd" else 1)  # softmax in float32-sized buffers
        if need > REF_LIMIT_BYTES:
            pytest.skip(f"{backend} would materialise {need / 2**30:.1f} GiB of scores")
    torch.manual_seed(0)
    module = NonLocal2d(s["C"], backend="reference" if backend == COMPILED else backend, **NONLOCAL2D_CONFIG)
    with torch.no_grad():  # a trained-looking block: the zero-initialised output conv would cut the gradients
        module.out.weight.normal_(0, 0.02)
    module = module.to(device=device, dtype=dtype)
    x = torch.randn(s["B"], s["C"], s["H"], s["W"], device=device, dtype=dtype, requires_grad=mode == "fwd+bwd")
    fn = compiled(module) if backend == COMPILED else module
    call = make_callable(fn, (x,), mode)
    run_benchmark(benchmark, call, device, group=f"NonLocal2d {shape} {mode}", backend=backend, shape=shape,
                  mode=mode, dtype=str(dtype), **s, **NONLOCAL2D_CONFIG)
