"""Flash non-local attention in Triton: ``srops::nonlocal_attention_triton_fwd`` / ``_bwd``.

Layouts (single head): q ``[B, N, d]``, k ``[B, M, d]``, v ``[B, M, dv]`` → out ``[B, N, dv]``.

* Forward: one program per (query block, batch item) streams the keys in blocks
  with an online softmax, so the ``N × M`` scores are never stored. It saves the
  output and the row softmax statistics ``stats [B, 2, N]`` (float32, base 2): with
  ``t_j = q·k_j · scale · log2 e``, ``stats[:, 0] = max_j t_j`` and
  ``stats[:, 1] = log2 Σ_j 2^(t_j − max)``; their sum is the row log-sum-exp.
  Keeping the two apart matters for large logits (SAN uses no 1/√d): one float32
  log-sum-exp near 300 carries an absolute error of ~1e-5, which every
  recomputed probability would inherit.
* Backward, without atomics (bitwise deterministic): ``delta = rowsum(dO ∘ O)``, then
  one pass computing dQ, dK and dV together with one exp per score
  (``p = 2^((t − max) − log2 sum)`` recomputed once), dQ partials per key group in a
  float32 scratch summed in index order afterwards (see triton_bwd_kernels).

Any N and M (masked tails), any head dims up to 128 (padded to the next power of
two, at least 16, with masks; d ≠ dv allowed), float16/bfloat16/float32 inputs with
float32 accumulation (float32 products in IEEE precision, not TF32), explicit
strides, int64 offsets. Block sizes and warps are chosen by a fixed rule on bucketed
sizes (:mod:`triton_configs`: the same shape gets the same configuration in every
process, so results are bitwise reproducible run to run); :func:`kernel_configs` lists the
candidates and :func:`forced_config` forces one. Under ``TRITON_INTERPRET=1`` (CPU
tensors) one small fixed configuration keeps runs short.

Triton is imported guarded: without it :data:`TRITON_ERROR` says why and nothing
here is registered. Set ``TRITON_INTERPRET`` before this module is imported.
"""
from __future__ import annotations

import contextlib
import os
from typing import Sequence

import torch

from srops.ops.nonlocal_attention import triton_configs as _configs
from srops.ops.nonlocal_attention.triton_configs import forced_config, kernel_configs, nan_outputs  # noqa: F401  (public)

try:
    import triton
    import triton.language as tl

    TRITON_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = tl = None
    TRITON_ERROR = f"triton is not installed ({exc})"

INTERPRET = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")
if INTERPRET and TRITON_ERROR is None:  # runtime loop bounds under triton <= 3.7 with numpy >= 2.4
    from srops.ops.nonlocal_attention import triton_interpret_compat

    triton_interpret_compat.install()
MAX_HEAD_DIM = 128
MAX_GRID_Y = 65535  # CUDA limit of the second grid dimension (the batch)
LOG2E = 1.4426950408889634


def available() -> str | None:
    """``None`` when the kernels can be launched in this process, else the reason."""
    return TRITON_ERROR


def can_run(tensors: Sequence[torch.Tensor]) -> str | None:
    """Per-call limits of the kernels (shapes); device and dtype are checked by the registry."""
    q, k, v = tensors
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        return "the Triton interpreter (CPU tensors) does not support bfloat16 dot products"
    if k.shape[1] == 0:
        return "needs at least one key (M >= 1)"
    if q.shape[2] > MAX_HEAD_DIM or v.shape[2] > MAX_HEAD_DIM:
        return f"head dims must be at most {MAX_HEAD_DIM}, got d={q.shape[2]}, dv={v.shape[2]}"
    if q.shape[0] > MAX_GRID_Y:
        return f"batch size must be at most {MAX_GRID_Y}, got {q.shape[0]}"
    return None


def _head_block(dim: int) -> int:
    return max(16, triton.next_power_of_2(dim))


def _precision(q: torch.Tensor) -> str:
    """float32 products in IEEE precision (as torch.bmm by default), not TF32; 16-bit inputs ignore it."""
    return "ieee" if q.dtype == torch.float32 else "tf32"


if TRITON_ERROR is None:
    from srops.ops.nonlocal_attention import triton_bwd_kernels as _bk
    from srops.ops.nonlocal_attention import triton_kernels as _k


def _device_guard(t: torch.Tensor):
    """The launches go to the current CUDA device: make it ``t``'s (a no-op context on CPU)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


# In-block offsets (block index × stride, block <= 128) are 32-bit; 64-bit bases carry the rest.
_MAX_INNER_STRIDE = 1 << 24


def _narrow_strides(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a contiguous copy when a non-batch stride would overflow the 32-bit in-block offsets."""
    return t if max(t.stride()[1:], default=0) < _MAX_INNER_STRIDE else t.contiguous()


def _config(name: str, n: int, m: int, b: int, block_d: int, block_dv: int, dtype: torch.dtype):
    cfg = _configs.choose(name, n, m, b, block_d, block_dv, dtype, INTERPRET)
    return cfg.kwargs["BLOCK_M"], cfg.kwargs["BLOCK_N"], {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def _fwd_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    q, k, v = map(_narrow_strides, (q, k, v))
    b, n, d = q.shape
    m, dv = k.shape[1], v.shape[2]
    out = _configs.empty(b, n, dv, device=q.device, dtype=q.dtype)
    stats = _configs.empty(b, 2, n, device=q.device, dtype=torch.float32)
    if b == 0 or n == 0:
        return out, stats
    block_d, block_dv = _head_block(d), _head_block(dv)
    bm, bn, launch = _config("fwd", n, m, b, block_d, block_dv, q.dtype)
    with _device_guard(q):
        _k.fwd_kernel[(triton.cdiv(n, bm), b)](
            q, k, v, out, stats, *q.stride(), *k.stride(), *v.stride(), *out.stride(), *stats.stride(),
            n, m, d, dv, abs(scale) * LOG2E if scale != 0 else 1.0, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=block_d,
            BLOCK_DV=block_dv, Q_SIGN=(scale > 0) - (scale < 0), PREC=_precision(q), **launch,
        )
    return out, stats


def _bwd_impl(
    grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, stats: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad, q, k, v, out = map(_narrow_strides, (grad, q, k, v, out))
    b, n, d = q.shape
    m, dv = k.shape[1], v.shape[2]
    dq = _configs.empty(b, n, d, device=q.device, dtype=q.dtype)
    dk = _configs.empty(b, m, d, device=k.device, dtype=k.dtype)
    dvv = _configs.empty(b, m, dv, device=v.device, dtype=v.dtype)
    if b == 0 or n == 0 or m == 0:
        return dq.zero_(), dk.zero_(), dvv.zero_()
    block_d, block_dv = _head_block(d), _head_block(dv)
    bm, bn, launch = _config("bwd", n, m, b, block_d, block_dv, q.dtype)
    n_qb, n_kb = triton.cdiv(n, bm), triton.cdiv(m, bn)
    n_pad, m_pad = n_qb * bm, n_kb * bn
    groups, chunks, kpg, qpc = _configs.bwd_split(n_kb, n_qb, b, n_pad, m_pad, block_d, block_dv)
    f32 = torch.float32
    delta = _configs.empty(b, n, device=q.device, dtype=f32)
    dq_part = _configs.empty(groups, b, n_pad, block_d, device=q.device, dtype=f32)
    partial = chunks > 1
    dk_out = _configs.empty(chunks, b, m_pad, block_d, device=q.device, dtype=f32) if partial else dk
    dv_out = _configs.empty(chunks, b, m_pad, block_dv, device=q.device, dtype=f32) if partial else dvv
    with _device_guard(q):
        block = 16 if INTERPRET else 64
        _bk.delta_kernel[(triton.cdiv(n, block), b)](
            out, grad, delta, *out.stride(), *grad.stride(), n, dv, BLOCK_M=block, BLOCK_DV=block_dv,
        )
        _bk.bwd_kernel[(groups * chunks, b)](
            q, k, v, grad, stats, delta, dq_part, dk_out, dv_out,
            *q.stride(), *k.stride(), *v.stride(), *grad.stride(), *stats.stride(),
            n, m, d, dv, n_pad, m_pad, abs(scale) * LOG2E if scale != 0 else 1.0, scale, kpg, qpc, groups,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=block_d, BLOCK_DV=block_dv, Q_SIGN=(scale > 0) - (scale < 0),
            PARTIAL=partial, PREC=_precision(q), **launch,
        )
        sums = [(dq_part, dq, groups, n, n_pad, d, abs(scale), block_d)]
        if partial:
            sums += [(dk_out, dk, chunks, m, m_pad, d, scale, block_d),
                     (dv_out, dvv, chunks, m, m_pad, dv, 1.0, block_dv)]
        for parts, target, count, rows, rows_pad, cols, factor, block_c in sums:
            block_r = 16 if INTERPRET else 64
            _bk.partial_sum_kernel[(triton.cdiv(rows, block_r), b)](
                parts, target, count, rows, rows_pad, cols, factor, BLOCK_R=block_r, BLOCK_C=block_c,
            )
    return dq, dk, dvv


if TRITON_ERROR is None:

    @torch.library.custom_op("srops::nonlocal_attention_triton_fwd", mutates_args=())
    def nonlocal_attention_triton_fwd(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flash forward: ``(out [B, N, dv] in q's dtype, stats [B, 2, N] float32)`` (row max, log2 row sum)."""
        return _fwd_impl(q, k, v, scale)

    @nonlocal_attention_triton_fwd.register_fake
    def _fwd_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
        b, n, _ = q.shape
        return q.new_empty(b, n, v.shape[2]), q.new_empty(b, 2, n, dtype=torch.float32)

    @torch.library.custom_op("srops::nonlocal_attention_triton_bwd", mutates_args=())
    def nonlocal_attention_triton_bwd(
        grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
        stats: torch.Tensor, scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flash backward: ``(dq, dk, dv)``, contiguous, in the inputs' dtype; deterministic."""
        return _bwd_impl(grad, q, k, v, out, stats, scale)

    @nonlocal_attention_triton_bwd.register_fake
    def _bwd_fake(grad, q, k, v, out, stats, scale):
        return (torch.empty(q.shape, dtype=q.dtype, device=q.device),
                torch.empty(k.shape, dtype=k.dtype, device=k.device),
                torch.empty(v.shape, dtype=v.dtype, device=v.device))

    def _setup_context(ctx, inputs, output) -> None:
        q, k, v, scale = inputs
        out, stats = output
        ctx.mark_non_differentiable(stats)
        ctx.save_for_backward(q, k, v, out, stats)
        ctx.scale = scale

    def _backward(ctx, grad_out: torch.Tensor, grad_stats: torch.Tensor | None):
        q, k, v, out, stats = ctx.saved_tensors
        dq, dk, dv = torch.ops.srops.nonlocal_attention_triton_bwd(grad_out, q, k, v, out, stats, ctx.scale)
        return dq, dk, dv, None

    nonlocal_attention_triton_fwd.register_autograd(_backward, setup_context=_setup_context)


def nonlocal_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v for q [B, N, d], k [B, M, d], v [B, M, dv] → [B, N, dv] on the flash kernels."""
    if TRITON_ERROR is not None:
        raise RuntimeError(f"srops.nonlocal_attention: backend 'triton' is unavailable: {TRITON_ERROR}")
    return torch.ops.srops.nonlocal_attention_triton_fwd(q, k, v, float(scale))[0]


def sass_kernels() -> list[tuple[str, object, tuple[str, ...]]]:
    """(configuration name, jit kernel, float32 pointer arguments) of each tuned kernel (tools/sass_report.py)."""
    return [
        ("fwd", _k.fwd_kernel, ("STATS",)),
        ("bwd", _bk.bwd_kernel, ("STATS", "DELTA", "DQP")),
    ]
