"""Flash non-local attention in Triton: ``srops::flash_nonlocal_fwd`` / ``srops::flash_nonlocal_bwd``.

Layouts (single head): q ``[B, N, d]``, k ``[B, M, d]``, v ``[B, M, dv]`` → out ``[B, N, dv]``.

* Forward: one program per (query block, batch item) streams the keys in blocks
  with an online softmax, so the ``N × M`` scores are never stored. It saves the
  output and the row softmax statistics ``stats [B, 2, N]`` (float32, base 2): with
  ``t_j = q·k_j · scale · log2 e``, ``stats[:, 0] = max_j t_j`` and
  ``stats[:, 1] = log2 Σ_j 2^(t_j − max)``; their sum is the row log-sum-exp.
  Keeping the two apart matters for large logits (SAN uses no 1/√d): one float32
  log-sum-exp near 300 carries an absolute error of ~1e-5, which every
  recomputed probability would inherit.
* Backward, without atomics (deterministic): ``delta = rowsum(dO ∘ O)``, then one
  pass per query block for dQ and one pass per key block for dK and dV, each
  recomputing ``p = 2^((t − max) − log2 sum)``.

Any N and M (masked tails), any head dims up to 128 (padded to the next power of
two, at least 16, with masks; d ≠ dv allowed), float16/bfloat16/float32 inputs with
float32 accumulation (float32 products in IEEE precision, not TF32), explicit
strides, int64 offsets. Block sizes are autotuned on the GPU; under
``TRITON_INTERPRET=1`` (CPU tensors) one small fixed configuration keeps runs short.

Triton is imported guarded: without it :data:`TRITON_ERROR` says why and nothing
here is registered. Set ``TRITON_INTERPRET`` before this module is imported.
"""
from __future__ import annotations

import os
from typing import Sequence

import torch

try:
    import triton
    import triton.language as tl

    TRITON_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = tl = None
    TRITON_ERROR = f"triton is not installed ({exc})"

INTERPRET = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")
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

    @triton.jit
    def _fwd_kernel(
        Q, K, V, O, STATS,
        sqb, sqn, sqd, skb, skm, skd, svb, svm, svd, sob, son, sod, slb, sls, sln,
        N, M, D, DV, qk_scale,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        pid_m = tl.program_id(0).to(tl.int64)
        pid_b = tl.program_id(1).to(tl.int64)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        row_ok = offs_m < N
        q = tl.load(Q + pid_b * sqb + offs_m[:, None] * sqn + offs_d[None, :] * sqd,
                    mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
        for start in range(0, M, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            col_ok = offs_n < M
            k = tl.load(K + pid_b * skb + offs_n[:, None] * skm + offs_d[None, :] * skd,
                        mask=col_ok[:, None] & (offs_d[None, :] < D), other=0.0)
            v = tl.load(V + pid_b * svb + offs_n[:, None] * svm + offs_dv[None, :] * svd,
                        mask=col_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
            s = tl.where(col_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.math.exp2(m_i - m_new)
            p = tl.math.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
            m_i = m_new
        acc = acc / l_i[:, None]
        tl.store(O + pid_b * sob + offs_m[:, None] * son + offs_dv[None, :] * sod, acc.to(O.dtype.element_ty),
                 mask=row_ok[:, None] & (offs_dv[None, :] < DV))
        tl.store(STATS + pid_b * slb + offs_m * sln, m_i, mask=row_ok)
        tl.store(STATS + pid_b * slb + sls + offs_m * sln, tl.math.log2(l_i), mask=row_ok)

    @triton.jit
    def _delta_kernel(
        O, DO, DELTA, sob, son, sod, sgb, sgn, sgd, N, DV,
        BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr,
    ):
        pid_m = tl.program_id(0).to(tl.int64)
        pid_b = tl.program_id(1).to(tl.int64)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_dv = tl.arange(0, BLOCK_DV)
        mask = (offs_m[:, None] < N) & (offs_dv[None, :] < DV)
        o = tl.load(O + pid_b * sob + offs_m[:, None] * son + offs_dv[None, :] * sod, mask=mask, other=0.0)
        do = tl.load(DO + pid_b * sgb + offs_m[:, None] * sgn + offs_dv[None, :] * sgd, mask=mask, other=0.0)
        delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + pid_b * N + offs_m, delta, mask=offs_m < N)

    @triton.jit
    def _dq_kernel(
        Q, K, V, DO, STATS, DELTA, DQ,
        sqb, sqn, sqd, skb, skm, skd, svb, svm, svd, sgb, sgn, sgd, slb, sls, sln,
        N, M, D, DV, qk_scale, scale,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        pid_m = tl.program_id(0).to(tl.int64)
        pid_b = tl.program_id(1).to(tl.int64)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        row_ok = offs_m < N
        q = tl.load(Q + pid_b * sqb + offs_m[:, None] * sqn + offs_d[None, :] * sqd,
                    mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        do = tl.load(DO + pid_b * sgb + offs_m[:, None] * sgn + offs_dv[None, :] * sgd,
                     mask=row_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        row_max = tl.load(STATS + pid_b * slb + offs_m * sln, mask=row_ok, other=0.0)
        log2_sum = tl.load(STATS + pid_b * slb + sls + offs_m * sln, mask=row_ok, other=0.0)
        delta = tl.load(DELTA + pid_b * N + offs_m, mask=row_ok, other=0.0)
        dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        for start in range(0, M, BLOCK_N):
            offs_n = start + tl.arange(0, BLOCK_N)
            col_ok = offs_n < M
            k = tl.load(K + pid_b * skb + offs_n[:, None] * skm + offs_d[None, :] * skd,
                        mask=col_ok[:, None] & (offs_d[None, :] < D), other=0.0)
            v = tl.load(V + pid_b * svb + offs_n[:, None] * svm + offs_dv[None, :] * svd,
                        mask=col_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PREC) * qk_scale
            p = tl.math.exp2((s - row_max[:, None]) - log2_sum[:, None])
            p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PREC)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PREC)
        tl.store(DQ + pid_b * N * D + offs_m[:, None] * D + offs_d[None, :], (dq * scale).to(DQ.dtype.element_ty),
                 mask=row_ok[:, None] & (offs_d[None, :] < D))

    @triton.jit
    def _dkdv_kernel(
        Q, K, V, DO, STATS, DELTA, DK, DV_,
        sqb, sqn, sqd, skb, skm, skd, svb, svm, svd, sgb, sgn, sgd, slb, sls, sln,
        N, M, D, DV, qk_scale, scale,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        PREC: tl.constexpr,
    ):
        pid_n = tl.program_id(0).to(tl.int64)
        pid_b = tl.program_id(1).to(tl.int64)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        offs_dv = tl.arange(0, BLOCK_DV)
        col_ok = offs_n < M
        k = tl.load(K + pid_b * skb + offs_n[:, None] * skm + offs_d[None, :] * skd,
                    mask=col_ok[:, None] & (offs_d[None, :] < D), other=0.0)
        v = tl.load(V + pid_b * svb + offs_n[:, None] * svm + offs_dv[None, :] * svd,
                    mask=col_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
        dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
        for start in range(0, N, BLOCK_M):
            offs_m = start + tl.arange(0, BLOCK_M)
            row_ok = offs_m < N
            q = tl.load(Q + pid_b * sqb + offs_m[:, None] * sqn + offs_d[None, :] * sqd,
                        mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
            do = tl.load(DO + pid_b * sgb + offs_m[:, None] * sgn + offs_dv[None, :] * sgd,
                         mask=row_ok[:, None] & (offs_dv[None, :] < DV), other=0.0)
            row_max = tl.load(STATS + pid_b * slb + offs_m * sln, mask=row_ok, other=0.0)
            log2_sum = tl.load(STATS + pid_b * slb + sls + offs_m * sln, mask=row_ok, other=0.0)
            delta = tl.load(DELTA + pid_b * N + offs_m, mask=row_ok, other=0.0)
            # transposed scores: [BLOCK_N, BLOCK_M]
            st = tl.dot(k, tl.trans(q), input_precision=PREC) * qk_scale
            pt = tl.math.exp2((st - row_max[None, :]) - log2_sum[None, :])
            pt = tl.where(col_ok[:, None] & row_ok[None, :], pt, 0.0)
            dv += tl.dot(pt.to(do.dtype), do, input_precision=PREC)
            dpt = tl.dot(v, tl.trans(do), input_precision=PREC)
            dst = pt * (dpt - delta[None, :])
            dk += tl.dot(dst.to(q.dtype), q, input_precision=PREC)
        out_k = pid_b * M * D + offs_n[:, None] * D + offs_d[None, :]
        tl.store(DK + out_k, (dk * scale).to(DK.dtype.element_ty), mask=col_ok[:, None] & (offs_d[None, :] < D))
        out_v = pid_b * M * DV + offs_n[:, None] * DV + offs_dv[None, :]
        tl.store(DV_ + out_v, dv.to(DV_.dtype.element_ty), mask=col_ok[:, None] & (offs_dv[None, :] < DV))

    def _configs(pairs: Sequence[tuple[int, int]]) -> list:
        return [
            triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn in pairs for w, s in ((4, 2), (4, 3), (8, 2))
        ]

    _KEY = ["N", "M", "BLOCK_D", "BLOCK_DV"]
    if INTERPRET:
        _fwd, _dq, _dkdv = _fwd_kernel, _dq_kernel, _dkdv_kernel
        _FIXED: dict[str, int] = {"BLOCK_M": 16, "BLOCK_N": 16}
    else:
        _fwd = triton.autotune(_configs(((64, 32), (64, 64), (128, 32), (128, 64))), key=_KEY)(_fwd_kernel)
        _dq = triton.autotune(_configs(((32, 64), (64, 32), (64, 64), (128, 32))), key=_KEY)(_dq_kernel)
        _dkdv = triton.autotune(_configs(((64, 32), (32, 64), (64, 64), (32, 128))), key=_KEY)(_dkdv_kernel)
        _FIXED = {}


def _grid(count: int, batch: int, block: str):
    if INTERPRET:
        return (triton.cdiv(count, _FIXED[block]), batch)
    return lambda meta: (triton.cdiv(count, meta[block]), batch)


def _fwd_impl(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    b, n, d = q.shape
    m, dv = k.shape[1], v.shape[2]
    out = torch.empty(b, n, dv, device=q.device, dtype=q.dtype)
    stats = torch.empty(b, 2, n, device=q.device, dtype=torch.float32)
    if b == 0 or n == 0:
        return out, stats
    _fwd[_grid(n, b, "BLOCK_M")](
        q, k, v, out, stats, *q.stride(), *k.stride(), *v.stride(), *out.stride(), *stats.stride(),
        n, m, d, dv, scale * LOG2E, BLOCK_D=_head_block(d), BLOCK_DV=_head_block(dv), PREC=_precision(q), **_FIXED,
    )
    return out, stats


def _bwd_impl(
    grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, stats: torch.Tensor,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, n, d = q.shape
    m, dv = k.shape[1], v.shape[2]
    dq = torch.empty(b, n, d, device=q.device, dtype=q.dtype)
    dk = torch.empty(b, m, d, device=k.device, dtype=k.dtype)
    dvv = torch.empty(b, m, dv, device=v.device, dtype=v.dtype)
    if b == 0 or n == 0 or m == 0:
        return dq.zero_(), dk.zero_(), dvv.zero_()
    block_d, block_dv = _head_block(d), _head_block(dv)
    delta = torch.empty(b, n, device=q.device, dtype=torch.float32)
    _delta_kernel[(triton.cdiv(n, 16 if INTERPRET else 64), b)](
        out, grad, delta, *out.stride(), *grad.stride(), n, dv, BLOCK_M=16 if INTERPRET else 64, BLOCK_DV=block_dv,
    )
    strides = (*q.stride(), *k.stride(), *v.stride(), *grad.stride(), *stats.stride())
    _dq[_grid(n, b, "BLOCK_M")](
        q, k, v, grad, stats, delta, dq, *strides, n, m, d, dv, scale * LOG2E, scale,
        BLOCK_D=block_d, BLOCK_DV=block_dv, PREC=_precision(q), **_FIXED,
    )
    _dkdv[_grid(m, b, "BLOCK_N")](
        q, k, v, grad, stats, delta, dk, dvv, *strides, n, m, d, dv, scale * LOG2E, scale,
        BLOCK_D=block_d, BLOCK_DV=block_dv, PREC=_precision(q), **_FIXED,
    )
    return dq, dk, dvv


if TRITON_ERROR is None:

    @torch.library.custom_op("srops::flash_nonlocal_fwd", mutates_args=())
    def flash_nonlocal_fwd(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flash forward: ``(out [B, N, dv] in q's dtype, stats [B, 2, N] float32)`` (row max, log2 row sum)."""
        return _fwd_impl(q, k, v, scale)

    @flash_nonlocal_fwd.register_fake
    def _fwd_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
        b, n, _ = q.shape
        return q.new_empty(b, n, v.shape[2]), q.new_empty(b, 2, n, dtype=torch.float32)

    @torch.library.custom_op("srops::flash_nonlocal_bwd", mutates_args=())
    def flash_nonlocal_bwd(
        grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
        stats: torch.Tensor, scale: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flash backward: ``(dq, dk, dv)``, contiguous, in the inputs' dtype; deterministic."""
        return _bwd_impl(grad, q, k, v, out, stats, scale)

    @flash_nonlocal_bwd.register_fake
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
        dq, dk, dv = torch.ops.srops.flash_nonlocal_bwd(grad_out, q, k, v, out, stats, ctx.scale)
        return dq, dk, dv, None

    flash_nonlocal_fwd.register_autograd(_backward, setup_context=_setup_context)


def nonlocal_attention_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(q kᵀ · scale) v for q [B, N, d], k [B, M, d], v [B, M, dv] → [B, N, dv] on the flash kernels."""
    if TRITON_ERROR is not None:
        raise RuntimeError(f"srops.nonlocal_attention: backend 'triton' is unavailable: {TRITON_ERROR}")
    return torch.ops.srops.flash_nonlocal_fwd(q, k, v, float(scale))[0]
