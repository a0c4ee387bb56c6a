"""``nonlocal_attention``: argument checks, backend registration and dispatch.

Autograd of ``sdpa`` (PyTorch's CPU flash kernel has no double backward) and ``triton`` (its
backward is a kernel), when autograd records and a tensor needs a gradient: ``_FusedAttention``
runs the backend's forward with autograd off, saving only what its backward needs (q, k, v as
the kernel takes them, the output, the row statistics), and a first-order backward calls the
backend's backward directly, so no graph is kept beyond the one node. Under
``create_graph=True`` its backward differentiates the reference, recomputed from the saved
q, k, v, so higher-order gradients are exact (at the reference's O(B·N·M) memory for that
backward only). ``reference`` is plain autograd (any order). Under ``torch.compile`` each backend
runs as a traceable function with its own autograd.
"""
from __future__ import annotations

import torch

from srops import _backend, _ext
from srops._checks import check_dim_size, check_float, check_same, check_tensor
from srops.ops.nonlocal_attention import sdpa_impl, triton_impl
from srops.ops.nonlocal_attention.reference import nonlocal_attention_ref
from srops.ops.nonlocal_attention.sdpa_impl import nonlocal_attention_sdpa

if _ext.HAS_EXT:
    from srops.ops.nonlocal_attention import cpu_impl
else:
    cpu_impl = None  # type: ignore[assignment]

OP = "nonlocal_attention"


class _FusedAttention(torch.autograd.Function):
    """A backend's forward and first-order backward; a create_graph backward through the reference.

    ``kernels`` has ``forward(q, k, v, scale) -> (out, *extra)`` and
    ``backward(grad, q, k, v, out, *extra, scale=) -> (dq, dk, dv)``, both called with autograd off;
    q, k, v are ``[..., N, d]``, ``[..., M, d]``, ``[..., M, dv]`` with one batch of leading dims.
    """

    @staticmethod
    def forward(ctx, kernels, scale: float, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out, *extra = kernels.forward(q, k, v, scale)
        ctx.kernels, ctx.scale = kernels, scale
        ctx.mark_non_differentiable(*extra)
        ctx.save_for_backward(q, k, v, out, *extra)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        q, k, v, out, *extra = ctx.saved_tensors
        need = ctx.needs_input_grad[2:]
        if torch.is_grad_enabled():  # create_graph=True
            wrt = [t if t.requires_grad else t.detach().requires_grad_() for t in (q, k, v)]
            with torch.enable_grad():
                qf, kf, vf = (t.flatten(0, -3) for t in wrt)
                ref = nonlocal_attention_ref(qf, kf, vf, ctx.scale).view(out.shape)
            grads = iter(torch.autograd.grad(ref, [t for t, n in zip(wrt, need, strict=True) if n], grad,
                                             create_graph=True))
            return (None, None) + tuple(next(grads) if n else None for n in need)
        grads = ctx.kernels.backward(grad, q, k, v, out, *extra, scale=ctx.scale)
        return (None, None) + tuple(g if n else None for g, n in zip(grads, need, strict=True))


class _TritonKernels:
    """The Triton flash forward (output, row statistics) and backward ops."""

    @staticmethod
    def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, ...]:
        return tuple(torch.ops.srops.nonlocal_attention_triton_fwd(q, k, v, float(scale)))

    @staticmethod
    def backward(grad, q, k, v, out, stats, scale: float):
        return torch.ops.srops.nonlocal_attention_triton_bwd(grad, q, k, v, out, stats, float(scale))


def _sdpa_autograd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    # the head-dim copies are recorded by autograd, so that _FusedAttention saves them and not the callers' views
    out = _FusedAttention.apply(sdpa_impl.SdpaKernels, scale, *sdpa_impl.as_heads(q, k, v))
    return sdpa_impl.from_heads(out, q.dtype)


def _triton_autograd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    if triton_impl.TRITON_ERROR is not None:
        raise RuntimeError(f"srops.nonlocal_attention: backend 'triton' is unavailable: {triton_impl.TRITON_ERROR}")
    return _FusedAttention.apply(_TritonKernels, scale, q, k, v)


_WRAPPED = {"sdpa": _sdpa_autograd, "triton": _triton_autograd}

_backend.register(_backend.Backend(OP, "reference", nonlocal_attention_ref, devices=("cpu", "cuda")))
_backend.register(_backend.Backend(OP, "sdpa", nonlocal_attention_sdpa, devices=("cpu", "cuda")))
# C++ flash kernels (csrc/nonlocal_attention/): float32/float64, half precision through float32.
_backend.register(
    _backend.Backend(
        OP, "cpu", cpu_impl.nonlocal_attention_cpu if cpu_impl else _backend.not_built, devices=("cpu",),
        available=_ext.kernel_availability(_ext.fwd_bwd(OP), "CPU"),
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
# (tools/nonlocal_cpu_interleaved.py, AMD EPYC, float32, one thread, wall-clock medians, fwd+bwd against
# SDPA and the better of the reference and its compiled form: B=64 N=576 M=144 d=8 2.7x, 2.7x; d=32 B=16
# 1.2x, 1.2x; B=2 N=M=2304 1.35x, 1.7x; B=32 N=144 M=36 d=16 2.1x, 1.3x);
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
        return _WRAPPED[chosen.name](q, k, v, scale)
    return chosen.fn(q, k, v, scale)
