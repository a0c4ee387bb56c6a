"""Triton forward kernel of the flash non-local attention (layouts and launchers in triton_impl).

Only imported when triton imports. Block sizes and warps come from triton_configs; the backward
kernels are in triton_bwd_kernels.
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
    Q, K, V, O, STATS,  # noqa: E741  (O: the output, as in the papers)
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
    k_step = tl.cast(BLOCK_N, tl.int64) * skm
    v_step = tl.cast(BLOCK_N, tl.int64) * svm
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M, 1 if PREC == "ieee" else 16], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_DV], tl.float32)
    full = M // BLOCK_N
    for _ in range(0, full):  # full key blocks: no column masks
        k = tl.load(k_ptrs, mask=d_ok, other=0.0)
        v = tl.load(v_ptrs, mask=dv_ok, other=0.0)
        m_i, l_i, acc = _fwd_step(q, k, v, m_i, l_i, acc, cols, qk_scale, False, PREC)
        k_ptrs += k_step
        v_ptrs += v_step
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
