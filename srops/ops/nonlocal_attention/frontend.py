"""``nonlocal_attention``: argument checks, backend registration and dispatch.

Double backward: ``reference`` is plain autograd (any order). ``sdpa`` (PyTorch's CPU flash
kernel has no double backward) and ``triton`` (its backward is a kernel) are wrapped here, when
autograd records and a tensor needs a gradient, in ``_HigherOrderViaReference``: first-order
backward runs the backend's own backward; under ``create_graph=True`` the backward differentiates
the reference, recomputed from the saved q, k, v, so higher-order gradients are exact (at the
reference's O(B·N·M) memory for that backward only).
"""
from __future__ import annotations

import torch

from srops import _backend, _ext
from srops._checks import check_dim_size, check_float, check_same, check_tensor
from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref
from srops.ops.nonlocal_attention.sdpa_impl import nonlocal_attention_sdpa
from srops.ops.nonlocal_attention import triton_impl

if _ext.HAS_EXT:
    from srops.ops.nonlocal_attention import cpu_impl
else:
    cpu_impl = None  # type: ignore[assignment]

OP = "nonlocal_attention"
_WRAPPED = ("sdpa", "triton")


class _HigherOrderViaReference(torch.autograd.Function):
    """The backend's forward and first-order backward; create_graph backward through the reference."""

    @staticmethod
    def forward(ctx, fn, scale: float, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            ctx.inner = tuple(t.detach().requires_grad_(t.requires_grad) for t in (q, k, v))
            ctx.out = fn(*ctx.inner, scale)
        ctx.scale = scale
        ctx.save_for_backward(q, k, v)
        return ctx.out.detach()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        need = ctx.needs_input_grad[2:]
        if torch.is_grad_enabled():  # create_graph=True
            wrt = [t if t.requires_grad else t.detach().requires_grad_() for t in ctx.saved_tensors]
            with torch.enable_grad():
                ref = nonlocal_attention_ref(*wrt, ctx.scale)
            grads = torch.autograd.grad(ref, [t for t, n in zip(wrt, need) if n], grad, create_graph=True)
        else:
            grads = torch.autograd.grad(ctx.out, [t for t, n in zip(ctx.inner, need) if n], grad, retain_graph=True)
        it = iter(grads)
        return (None, None) + tuple(next(it) if n else None for n in need)

_backend.register(_backend.Backend(OP, "reference", nonlocal_attention_ref, devices=("cpu", "cuda")))
_backend.register(_backend.Backend(OP, "sdpa", nonlocal_attention_sdpa, devices=("cpu", "cuda")))
# C++ flash kernels (csrc/nonlocal_attention/): float32/float64, half precision through float32.
_backend.register(
    _backend.Backend(
        OP, "cpu", cpu_impl.nonlocal_attention_cpu if cpu_impl else None, devices=("cpu",),
        available=_ext.kernel_availability(("nonlocal_attention_fwd", "nonlocal_attention_bwd"), "CPU"),
    )
)
# Triton flash kernels; CPU tensors only under TRITON_INTERPRET=1 (the interpreter, for tests, not speed).
_backend.register(
    _backend.Backend(
        OP, "triton", triton_impl.nonlocal_attention_triton,
        devices=("cuda", "cpu") if triton_impl.INTERPRET else ("cuda",),
        dtypes=(torch.float16, torch.bfloat16, torch.float32),
        available=triton_impl.available, can_run=triton_impl.can_run,
    )
)
# CPU: the C++ flash kernels measured faster than SDPA and the reference at the training shapes
# (bench/nonlocal_cpu_interleaved.py, AMD EPYC, float32, one thread, CPU-clock medians, fwd+bwd:
# B=64 N=576 M=144 d=8 1.8x SDPA, 3.8x reference; d=32 B=16 1.15x, 2.4x; B=2 N=M=2304 1.4x, 3.8x);
# SDPA where the extension is absent; the Triton interpreter is a test vehicle, never a default.
_backend.set_order(OP, "cpu", ("cpu", "sdpa", "reference"))
_backend.set_order(OP, "cuda", ("triton", "sdpa", "reference"))


def nonlocal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 1.0, backend: str | None = None
) -> torch.Tensor:
    """Single-head attention softmax(q kᵀ · scale) v, the core of a non-local block.

    Args:
        q: queries (θ) ``[B, N, d]``.
        k: keys (φ) ``[B, M, d]``.
        v: values (g) ``[B, M, dv]``.
        scale: logit scale; 1.0 for SAN/AlexHex7 (no 1/√d), ``d ** -0.5`` for FB's ``USE_SCALE``.
        backend: ``None`` (fastest available), ``"triton"``, ``"cpu"`` (C++ flash kernels),
            ``"sdpa"`` or ``"reference"``.

    All three tensors share device and dtype (float16, bfloat16, float32, float64; the triton
    backend takes float16/bfloat16/float32 only).
    Returns ``[B, N, dv]`` in the input dtype.
    """
    check_tensor(OP, "q", q, 3, "[B, N, d]")
    check_tensor(OP, "k", k, 3, "[B, M, d]")
    check_tensor(OP, "v", v, 3, "[B, M, dv]")
    check_same(OP, q=q, k=k, v=v)
    check_dim_size(OP, "k", k, 0, q.shape[0], "batch size B of q")
    check_dim_size(OP, "v", v, 0, q.shape[0], "batch size B of q")
    check_dim_size(OP, "k", k, 2, q.shape[2], "head dim d of q")
    check_dim_size(OP, "v", v, 1, k.shape[1], "key count M of k")
    scale = check_float(OP, "scale", scale)
    chosen = _backend.select(OP, (q, k, v), backend)
    if (chosen.name in _WRAPPED and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
            and not torch.compiler.is_compiling()):
        return _HigherOrderViaReference.apply(chosen.fn, scale, q, k, v)
    return chosen.fn(q, k, v, scale)
