"""Stage 2 of the device check: the Triton flash kernels against the float64 reference.

In priority order: every launch configuration of every kernel forced in turn, from the fixed candidate
list of ``srops/ops/nonlocal_attention/triton_configs.py`` (no autotuner: ``kernel_configs()`` and
``forced_config()``, re-exported by ``srops.ops.nonlocal_attention.triton_impl``) on a ragged bfloat16 shape; logits
above 100 (bfloat16) and near 1e4 (float32); bitwise determinism of forward and backward; ragged shapes in
bfloat16, float16 and float32 on the configurations the launch rule picks. Every output the kernels
allocate is pre-filled with NaN (``nan_outputs()``, and every ``torch.empty`` inside the call), so an
element a kernel fails to write shows up. Errors are against float64 on the same (rounded) inputs, bounded relative to each output's
componentwise magnitude (:func:`magnitudes`).
Dry run: CPU tensors under ``TRITON_INTERPRET=1`` (no bfloat16 there), tiny shapes.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from tools.gpu_check_common import CaseFailed, SkipCase, Stage

# ‖out − ref‖ / ‖ref‖ bounds per input dtype (float32 products in IEEE precision).
REL_TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}

# (B, N, M, d, dv): masked tails everywhere, head dims padded to 16/32/64/128, d != dv.
RAGGED_GPU = ((2, 77, 131, 24, 40), (1, 257, 300, 32, 32), (3, 129, 65, 8, 8), (1, 1000, 999, 64, 72),
              (2, 33, 1, 16, 128))
RAGGED_DRY = ((2, 5, 7, 8, 8), (1, 19, 23, 24, 40))
CONFIG_SHAPE_GPU = (2, 203, 141, 32, 32)
CONFIG_SHAPE_DRY = (1, 21, 18, 16, 16)


@contextlib.contextmanager
def nan_prefilled() -> Iterator[None]:
    """Inside the block every floating-point ``torch.empty`` is filled with NaN (unwritten outputs show)."""
    original = torch.empty

    def empty(*args, **kwargs):
        t = original(*args, **kwargs)
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t

    torch.empty = empty
    try:
        yield
    finally:
        torch.empty = original


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖ / ‖expected‖ in float64 (inf when actual holds NaN or inf)."""
    a, e = actual.detach().double(), expected.detach().double()
    if not torch.isfinite(a).all():
        return float("inf")
    return float((a - e).norm() / e.norm().clamp_min(1e-300))


def make_inputs(shape: tuple[int, ...], dtype: torch.dtype, device: str, logit: float | None = None,
                seed: int = 0) -> tuple[torch.Tensor, ...]:
    """q, k, v, grad and the scale; with ``logit``, the scale makes the largest |logit| about that size."""
    b, n, m, d, dv = shape
    gen = torch.Generator(device=device).manual_seed(seed)
    q = torch.randn(b, n, d, device=device, generator=gen).to(dtype)
    k = torch.randn(b, m, d, device=device, generator=gen).to(dtype)
    v = torch.randn(b, m, dv, device=device, generator=gen).to(dtype)
    g = torch.randn(b, n, dv, device=device, generator=gen).to(dtype)
    scale = d ** -0.5 if logit is None else logit / float((q.double() @ k.double().transpose(1, 2)).abs().max())
    return q, k, v, g, scale


def reference(q, k, v, g, scale, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """Output and input gradients of softmax(q kᵀ · scale) v computed by PyTorch in ``dtype``."""
    qr, kr, vr = (t.detach().to(dtype).requires_grad_() for t in (q, k, v))
    out = torch.softmax(qr @ kr.transpose(1, 2) * scale, dim=-1) @ vr
    out.backward(g.to(dtype))
    return out.detach(), qr.grad, kr.grad, vr.grad


def flash(q, k, v, g, scale) -> tuple[torch.Tensor, ...]:
    """The registered flash ops (forward, then backward), with NaN-filled outputs."""
    from srops.ops.nonlocal_attention import triton_impl

    nan_outputs = getattr(triton_impl, "nan_outputs", contextlib.nullcontext)
    with nan_prefilled(), nan_outputs():
        out, stats = torch.ops.srops.nonlocal_attention_triton_fwd(q, k, v, float(scale))
        dq, dk, dv = torch.ops.srops.nonlocal_attention_triton_bwd(g, q, k, v, out, stats, float(scale))
    if not torch.isfinite(stats).all():
        raise CaseFailed("stats hold NaN/inf (unwritten or overflowed row statistics)")
    return out, dq, dk, dv


def magnitudes(q, k, v, g, scale) -> tuple[torch.Tensor, ...]:
    """Componentwise scales of out, dq, dk, dv in float64 (the terms of each sum taken in absolute value):
    P|V|, s·(P∘|dO||V|ᵀ)|K|, s·(P∘|dO||V|ᵀ)ᵀ|Q|, Pᵀ|dO|. Rounding errors are bounded relative to these;
    the outputs themselves can be far smaller (near one-hot rows make dq and dk cancel almost exactly)."""
    q, k, v, g = (t.detach().double() for t in (q, k, v, g))
    p = torch.softmax(q @ k.transpose(1, 2) * scale, dim=-1)
    w = p * (g.abs() @ v.abs().transpose(1, 2))
    return p @ v.abs(), abs(scale) * w @ k.abs(), abs(scale) * w.transpose(1, 2) @ q.abs(), \
        p.transpose(1, 2) @ g.abs()


def judge(rec: dict, names: tuple[str, ...], got, want, mags, tol: float) -> None:
    """Each output passes when finite and ‖got − want‖ ≤ tol · ‖magnitude‖ (see :func:`magnitudes`); the
    record keeps ‖got − want‖ / ‖want‖ too."""
    errs, bad = {}, []
    for name, a, e, mag in zip(names, got, want, mags):
        if not torch.isfinite(a).all():
            bad.append(f"{name} holds NaN/inf")
            continue
        err, ref, scale = float((a.double() - e).norm()), float(e.norm()), float(mag.norm())
        errs[name] = float(f"{err / max(ref, 1e-300):.3e}")
        errs[name + "/mag"] = float(f"{err / max(scale, 1e-300):.3e}")
        if err > tol * scale:
            bad.append(f"{name}: error {err:.3e} > {tol:g} x magnitude {scale:.3e} (rel. {errs[name]:.3e})")
    rec["rel_err"] = errs
    if bad:
        raise CaseFailed("; ".join(bad))


def compare(rec: dict, q, k, v, g, scale) -> None:
    got = flash(q, k, v, g, scale)
    judge(rec, ("out", "dq", "dk", "dv"), got, reference(q, k, v, g, scale), magnitudes(q, k, v, g, scale),
          REL_TOL[q.dtype])


def _impl():
    from srops.ops.nonlocal_attention import triton_impl

    if triton_impl.TRITON_ERROR is not None:
        raise SkipCase(triton_impl.TRITON_ERROR)
    return triton_impl


def run(stage: Stage) -> None:
    device = "cpu" if stage.dry_run else "cuda"
    dry = stage.dry_run
    dtypes = (torch.float32, torch.float16) if dry else (torch.bfloat16, torch.float16, torch.float32)
    low = torch.float16 if dry else torch.bfloat16

    def forced(rec: dict, name: str, index: int, config) -> None:
        impl = _impl()
        rec["config"] = str(config)
        q, k, v, g, scale = make_inputs(CONFIG_SHAPE_DRY if dry else CONFIG_SHAPE_GPU, low, device, seed=index)
        with impl.forced_config(name, config):
            compare(rec, q, k, v, g, scale)

    impl = None
    try:
        impl = _impl()
    except SkipCase:
        pass
    if impl is not None and hasattr(impl, "kernel_configs") and hasattr(impl, "forced_config"):
        configs = impl.kernel_configs()
        stage.info["configs"] = {n: len(c) for n, c in configs.items()}
        for name, cfgs in configs.items():
            for i, cfg in enumerate(cfgs):
                stage.run(f"forced {name}[{i}]", forced, name, i, cfg, dtype=str(low))
    else:
        def missing(rec: dict) -> None:
            _impl()
            raise SkipCase("triton_impl has no kernel_configs()/forced_config(): configs cannot be forced")
        stage.run("forced configs", missing)

    def logits(rec: dict, dtype: torch.dtype, size: float) -> None:
        _impl()
        shape = (1, 40, 37, 16, 16) if dry else (2, 300, 257, 32, 32)
        q, k, v, g, scale = make_inputs(shape, dtype, device, logit=size, seed=7)
        rec["scale"] = scale
        compare(rec, q, k, v, g, scale)

    stage.run("logits ~150", logits, low, 150.0, dtype=str(low))
    stage.run("logits ~1e4", logits, torch.float32, 1e4, dtype="torch.float32")

    def determinism(rec: dict) -> None:
        _impl()
        q, k, v, g, scale = make_inputs((1, 50, 45, 16, 16) if dry else (2, 517, 389, 32, 32), low, device, seed=3)
        first = flash(q, k, v, g, scale)
        second = flash(q, k, v, g, scale)
        diff = [n for n, a, b in zip(("out", "dq", "dk", "dv"), first, second) if not torch.equal(a, b)]
        stage.check(not diff, f"not bitwise reproducible: {diff}")

    stage.run("determinism fwd+bwd", determinism, dtype=str(low))

    def ragged(rec: dict, shape, dtype) -> None:
        _impl()
        q, k, v, g, scale = make_inputs(shape, dtype, device, seed=sum(shape))
        compare(rec, q, k, v, g, scale)

    for dtype in dtypes:
        for shape in RAGGED_DRY if dry else RAGGED_GPU:
            stage.run(f"ragged {'x'.join(map(str, shape))}", ragged, shape, dtype, dtype=str(dtype))
    passed = sum(c["status"] == "pass" for c in stage.cases)
    worst = max((e for c in stage.cases for n, e in c.get("rel_err", {}).items() if n.endswith("/mag")),
                default=float("nan"))
    stage.info["headline"] = f"{passed}/{len(stage.cases)} pass, worst error/magnitude {worst:.2e}"
