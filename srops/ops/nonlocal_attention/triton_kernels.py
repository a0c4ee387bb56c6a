"""Triton kernels of the flash non-local attention (see triton_impl for layouts and the launchers).

Only imported when triton imports. Block sizes and warps come from triton_configs.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _fwd_step(q, k, v, m_i, l_i, acc, col_ok, qk_scale, MASKED: tl.constexpr, PREC: tl.constexpr):
    """One key block of the online softmax on raw scores (``qk_scale`` > 0 folded into the exp's FFMA)."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC)
    if MASKED:
        s = tl.where(col_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_scaled = m_new * qk_scale
    alpha = tl.math.exp2(tl.fma(m_i, qk_scale, -m_scaled))
    p = tl.math.exp2(tl.fma(s, qk_scale, -m_scaled[:, None]))
    p = p.to(v.dtype)
    if PREC == "ieee":  # float32 products run on FMA units: a plain row sum
        l_i = l_i * alpha[:, None] + tl.sum(p, 1)[:, None]
    else:  # row sums on the tensor cores: the 16 columns of l_i accumulate the same sum of p
        ones = tl.full([p.shape[1], 16], 1.0, v.dtype)
        l_i = l_i * alpha[:, None] + tl.dot(p, ones, input_precision=PREC)
    acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=PREC)
    return m_new, l_i, acc


@triton.jit
def fwd_kernel(
    Q, K, V, O, STATS,
    sqb, sqn, sqd, skb, skm, skd, svb, svm, svd, sob, son, sod, slb, sls, sln,
    N, M, D, DV, qk_scale,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    Q_SIGN: tl.constexpr, PREC: tl.constexpr,
):
    """One program per (query block, batch item). ``qk_scale = |scale|·log2 e`` (1 when scale = 0), and
    ``Q_SIGN`` (1, -1 or 0) the sign of scale applied to q, so the row max runs on raw scores."""
    pid_m = tl.program_id(0)
    pid_b = tl.program_id(1).to(tl.int64)
    row0 = pid_m.to(tl.int64) * BLOCK_M
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_ok = offs_d[None, :] < D
    dv_ok = offs_dv[None, :] < DV
    row_ok = rows < N - row0
    q = tl.load(Q + pid_b * sqb + row0 * sqn + rows[:, None] * sqn + offs_d[None, :] * sqd,
                mask=row_ok[:, None] & d_ok, other=0.0)
    if Q_SIGN != 1:
        q = q * Q_SIGN
    # 64-bit base pointers advanced per block; in-block offsets stay 32-bit
    k_ptrs = K + pid_b * skb + cols[:, None] * skm + offs_d[None, :] * skd
    v_ptrs = V + pid_b * svb + cols[:, None] * svm + offs_dv[None, :] * svd
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M, 1 if PREC == "ieee" else 16], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    full = M // BLOCK_N
    for _ in range(0, full):  # full key blocks: no column masks
        k = tl.load(k_ptrs, mask=d_ok, other=0.0)
        v = tl.load(v_ptrs, mask=dv_ok, other=0.0)
        m_i, l_i, acc = _fwd_step(q, k, v, m_i, l_i, acc, cols, qk_scale, False, PREC)
        k_ptrs += BLOCK_N * skm
        v_ptrs += BLOCK_N * svm
    if full * BLOCK_N < M:  # the ragged last block
        col_ok = cols < M - full * BLOCK_N
        k = tl.load(k_ptrs, mask=col_ok[:, None] & d_ok, other=0.0)
        v = tl.load(v_ptrs, mask=col_ok[:, None] & dv_ok, other=0.0)
        m_i, l_i, acc = _fwd_step(q, k, v, m_i, l_i, acc, col_ok, qk_scale, True, PREC)
    l_i = tl.max(l_i, 1)
    acc = acc / l_i[:, None]
    tl.store(O + pid_b * sob + row0 * son + rows[:, None] * son + offs_dv[None, :] * sod,
             acc.to(O.dtype.element_ty), mask=row_ok[:, None] & dv_ok)
    stats = STATS + pid_b * slb + row0 * sln + rows * sln
    tl.store(stats, m_i * qk_scale, mask=row_ok)
    tl.store(stats + sls, tl.math.log2(l_i), mask=row_ok)


@triton.jit
def delta_kernel(
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
def dq_kernel(
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
def dkdv_kernel(
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
