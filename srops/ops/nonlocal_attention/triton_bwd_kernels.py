"""Triton kernels of the flash non-local backward: one pass for dQ, dK and dV, one exp per score, no atomics.

Layouts as in triton_impl: q ``[B, N, d]``, k ``[B, M, d]``, v ``[B, M, dv]``, dO ``[B, N, dv]``,
stats ``[B, 2, N]`` (base-2 row max and log2 row sum), delta ``[B, N]`` (rowsum(dO ∘ O)).

The keys are cut into ``G`` groups of consecutive key blocks and the queries into ``S`` chunks of
consecutive query blocks; program ``(g, s, b)`` walks its key blocks in order and, for each, its query
blocks in order, recomputing ``p`` once per score. dK and dV of a key block accumulate in registers
over the chunk; dQ of a query block accumulates over the group in a float32 scratch row owned by this
program alone (``DQP [G, B, N_pad, BLOCK_D]``, read-modify-write in a fixed order). The partial sums
over groups (dQ) and chunks (dK, dV, when ``S > 1``) are then added in index order by
:func:`partial_sum_kernel`: every sum runs in the same order in every run (bitwise deterministic).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def delta_kernel(
    O, DO, DELTA, sob, son, sod, sgb, sgn, sgd, N, DV,  # noqa: E741  (O: the output, as in the papers)
    BLOCK_M: tl.constexpr, BLOCK_DV: tl.constexpr,
):
    """``DELTA[b, i] = Σ_c O[b, i, c] · dO[b, i, c]`` in float32; DELTA is ``[B, N]`` contiguous."""
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
def _bwd_step(k, v, q, do, dk, dv, m, ls, delta, col_ok, dq_ptrs, first, qk_scale,
              BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, MASKED: tl.constexpr, PREC: tl.constexpr):
    """One (query block, key block) tile ``[BLOCK_M, BLOCK_N]``: per-query vectors broadcast along rows."""
    s = tl.dot(q, tl.trans(k), input_precision=PREC)
    p = tl.math.exp2(tl.fma(s, qk_scale, -m[:, None]) - ls[:, None])
    if MASKED:
        p = tl.where(col_ok[None, :], p, 0.0)
    dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
    dp = tl.dot(do, tl.trans(v), input_precision=PREC)
    ds = (p * (dp - delta[:, None])).to(q.dtype)
    dk += tl.dot(tl.trans(ds), q, input_precision=PREC)
    # the running dQ partial enters the product as its accumulator: the tensor cores do the add
    # (the group's first key block starts it from zero: a predicated load, no branch)
    dq = tl.load(dq_ptrs, mask=tl.full([BLOCK_M, BLOCK_D], 0, tl.int1) | (first == 0), other=0.0)
    tl.store(dq_ptrs, tl.dot(ds, k, dq, input_precision=PREC))
    return dk, dv


@triton.jit
def _bwd_chunk(k, v, col_ok, first, q_base, do_base, st_base, delta_base, dq_base,
               sqn, sgn, sln, sls, N, qb_start, qb_end, d_ok, dv_ok, qk_scale,
               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
               MASKED: tl.constexpr, PREC: tl.constexpr):
    """dK, dV of one key block over the chunk's query blocks (in order), dQ partials into the scratch."""
    rows = tl.arange(0, BLOCK_M)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_DV], tl.float32)
    for qb in range(qb_start, qb_end):
        row0 = tl.cast(qb, tl.int64) * BLOCK_M
        row_ok = rows < N - row0
        q = tl.load(q_base + row0 * sqn, mask=row_ok[:, None] & d_ok, other=0.0)
        do = tl.load(do_base + row0 * sgn, mask=row_ok[:, None] & dv_ok, other=0.0)
        # rows past N: max = +inf gives p = 0, no per-score mask
        m = tl.load(st_base + row0 * sln, mask=row_ok, other=float("inf"))
        ls = tl.load(st_base + sls + row0 * sln, mask=row_ok, other=0.0)
        delta = tl.load(delta_base + row0, mask=row_ok, other=0.0)
        dk, dv = _bwd_step(k, v, q, do, dk, dv, m, ls, delta, col_ok, dq_base + row0 * BLOCK_D, first, qk_scale,
                           BLOCK_M, BLOCK_D, MASKED, PREC)
    return dk, dv


@triton.jit
def bwd_kernel(
    Q, K, V, DO, STATS, DELTA, DQP, DK, DV_,
    sqb, sqn, sqd, skb, skm, skd, svb, svm, svd, sgb, sgn, sgd, slb, sls, sln,
    N, M, D, DV, N_PAD, M_PAD, qk_scale, dk_scale, KPG, QPC, G,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
    Q_SIGN: tl.constexpr, PARTIAL: tl.constexpr, PREC: tl.constexpr,
):
    """Grid ``(G·S, B)``. ``KPG``/``QPC``: key blocks per group, query blocks per chunk.

    ``PARTIAL`` (S > 1): DK/DV_ are float32 partials ``[S, B, M_PAD, BLOCK_D|BLOCK_DV]``, unscaled;
    else DK/DV_ are the outputs ``[B, M, d|dv]`` contiguous, written scaled in their dtype.
    ``qk_scale``/``Q_SIGN`` as in the forward (the sign goes on k here), ``dk_scale = scale``; dQ
    partials are unscaled (dQ = |scale| · their sum).
    """
    pid = tl.program_id(0)
    g = pid % G
    s = pid // G
    pid_b = tl.program_id(1).to(tl.int64)
    n_batch = tl.num_programs(1)
    rows = tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_dv = tl.arange(0, BLOCK_DV)
    d_ok = offs_d[None, :] < D
    dv_ok = offs_dv[None, :] < DV
    n_kb = tl.cdiv(M, BLOCK_N)
    n_qb = tl.cdiv(N, BLOCK_M)
    kb_end = tl.minimum(g * KPG + KPG, n_kb)
    qb_start = s * QPC
    qb_end = tl.minimum(qb_start + QPC, n_qb)
    q_base = Q + pid_b * sqb + rows[:, None] * sqn + offs_d[None, :] * sqd
    do_base = DO + pid_b * sgb + rows[:, None] * sgn + offs_dv[None, :] * sgd
    st_base = STATS + pid_b * slb + rows * sln
    delta_base = DELTA + pid_b * N + rows
    dq_base = DQP + ((g * n_batch + pid_b) * N_PAD) * BLOCK_D + rows[:, None] * BLOCK_D + offs_d[None, :]
    for kb in range(g * KPG, kb_end):
        col0 = tl.cast(kb, tl.int64) * BLOCK_N
        col_ok = cols < M - col0
        k = tl.load(K + pid_b * skb + col0 * skm + cols[:, None] * skm + offs_d[None, :] * skd,
                    mask=col_ok[:, None] & d_ok, other=0.0)
        v = tl.load(V + pid_b * svb + col0 * svm + cols[:, None] * svm + offs_dv[None, :] * svd,
                    mask=col_ok[:, None] & dv_ok, other=0.0)
        if Q_SIGN != 1:
            k = k * Q_SIGN  # scores of q·(sign·k); dQ = |scale| · Σ dS (sign·k)
        first = kb == g * KPG
        if col0 + BLOCK_N > M:  # the ragged last key block: masked columns
            dk, dv = _bwd_chunk(k, v, col_ok, first, q_base, do_base, st_base, delta_base, dq_base,
                                sqn, sgn, sln, sls, N, qb_start, qb_end, d_ok, dv_ok, qk_scale,
                                BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, True, PREC)
        else:
            dk, dv = _bwd_chunk(k, v, col_ok, first, q_base, do_base, st_base, delta_base, dq_base,
                                sqn, sgn, sln, sls, N, qb_start, qb_end, d_ok, dv_ok, qk_scale,
                                BLOCK_M, BLOCK_N, BLOCK_D, BLOCK_DV, False, PREC)
        # the next key block reads these dQ tiles back, maybe in other threads of the program: order the
        # stores before those reads (once per key block, outside the pipelined query loop)
        tl.debug_barrier()
        if PARTIAL:
            part = (s * n_batch + pid_b) * M_PAD + col0
            tl.store(DK + (part + cols[:, None]) * BLOCK_D + offs_d[None, :], dk)
            tl.store(DV_ + (part + cols[:, None]) * BLOCK_DV + offs_dv[None, :], dv)
        else:
            out = pid_b * M + col0 + cols[:, None]
            tl.store(DK + out * D + offs_d[None, :], (dk * dk_scale).to(DK.dtype.element_ty),
                     mask=col_ok[:, None] & d_ok)
            tl.store(DV_ + out * DV + offs_dv[None, :], dv.to(DV_.dtype.element_ty), mask=col_ok[:, None] & dv_ok)


@triton.jit
def partial_sum_kernel(
    P, OUT, PARTS, ROWS, ROWS_PAD, COLS, scale,
    BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """``OUT[b, r, c] = scale · Σ_{i < PARTS} P[i, b, r, c]`` summed in index order.

    P is float32 ``[PARTS, B, ROWS_PAD, BLOCK_C]`` contiguous, OUT ``[B, ROWS, COLS]`` contiguous; grid
    ``(cdiv(ROWS, BLOCK_R), B)``.
    """
    pid_r = tl.program_id(0).to(tl.int64)
    pid_b = tl.program_id(1).to(tl.int64)
    n_batch = tl.num_programs(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    cols = tl.arange(0, BLOCK_C)
    ptrs = P + (pid_b * ROWS_PAD + rows[:, None]) * BLOCK_C + cols[None, :]
    row_ok = rows[:, None] < ROWS
    step = n_batch * ROWS_PAD * BLOCK_C
    acc = tl.zeros([BLOCK_R, BLOCK_C], tl.float32)
    for _ in range(0, PARTS):
        acc += tl.load(ptrs, mask=row_ok, other=0.0)
        ptrs += step
    tl.store(OUT + (pid_b * ROWS + rows[:, None]) * COLS + cols[None, :], (acc * scale).to(OUT.dtype.element_ty),
             mask=row_ok & (cols[None, :] < COLS))
