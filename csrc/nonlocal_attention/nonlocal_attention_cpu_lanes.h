// The query-lane kernels (forward and backward) of nonlocal_attention_cpu.cpp, included there once per
// instruction set after nonlocal_attention_cpu_kernels.h, inside the same `namespace SROPS_NL_ISA` (they use
// that file's vectors and vexp, and the .cpp's constants). Include nothing here.
//
// One vector holds one score of R = KeyVec<T>::lanes queries (16 float queries with AVX-512), so the online
// softmax's row statistics (max, sum, rescale factor) are vectors too: no horizontal reductions, no scalar
// exp per row and block, no masking of padded keys (keys are walked one at a time, in chunks of kLaneKeys).
// Per R queries and key: d + dv fused multiply-adds and one vector exp, whatever d and M are, which is what
// small heads and few keys need (the row-tile kernel pays per row and key block overheads that there cost
// more than the products). Layouts: q [B, N, d], k [B, M, d] and v [B, M, dv] contiguous; per task the
// scratch qT [d, QV·R] (a tile's queries transposed, zero past N) and oT [dv, QV·R].
//
// AVX2 (kQueryVecs = 2 below): an FMA there takes no broadcast operand, so each key (and value) element costs
// a broadcast load, and with one query vector per element that is a load per FMA; and 8 keys' accumulators
// are fewer independent chains than two FMA pipes times their latency keep busy. So the forward
// takes tiles of QV = 2 vectors (16 float queries) against chunks of 6 keys (12 accumulators + 2 query vectors
// + 1 broadcast = 15 of the 16 registers), and the backward's scores, dP and dq run 2 query vectors × 4 keys,
// its dk and dv 4 keys × 2 feature vectors. Measured against one vector (one thread, AMD EPYC, the median and
// best of 41 interleaved rounds): forward 1.14x / 1.23x at B·N·M·d = 16·576·144·32, 1.22x / 1.24x at
// 2·2304·2304·32, 1.12x / 1.06x at 64·576·144·8; forward + backward 1.08x / 1.13x, 1.04x / 1.04x, 1.04x / 1.05x.
// Per lane the arithmetic is the same whatever QV is (a query's result depends on the chunks, not its tile).
// AVX-512 and the baseline keep one vector (QV = 1).
//
// The backward in the same layout (FlashAttention-2's recomputation from the row log-sum-exp): a work unit
// is (batch b, a run of key chunks); for each chunk of KC keys it walks every tile of the sample, recomputes
// the probabilities P and dS = P ∘ (dP − Δ) as vectors over R queries, adds dS·k into the unit's transposed dq
// (partial) and keeps P and dS of the chunk ([KC, Np], in cache); then dk = scale·dSᵀq and dv = Pᵀg of the
// chunk's keys with features in lanes (q and g row-major), one register per key and feature vector.
// NOLINTBEGIN
namespace SROPS_NL_ISA {

// Calls fn(std::integral_constant<int, n>()) for a chunk of n = 1 .. kLaneKeys keys (the chunk's size is a
// template parameter of the kernels, so that its scores stay in registers).
template <typename F>
inline void with_chunk_keys(int64_t n, F&& fn) {
  static_assert(kLaneKeys == 8, "the cases are written out for chunks of up to 8 keys");
  switch (n) {
    case 1: fn(std::integral_constant<int, 1>()); break;
    case 2: fn(std::integral_constant<int, 2>()); break;
    case 3: fn(std::integral_constant<int, 3>()); break;
    case 4: fn(std::integral_constant<int, 4>()); break;
    case 5: fn(std::integral_constant<int, 5>()); break;
    case 6: fn(std::integral_constant<int, 6>()); break;
    case 7: fn(std::integral_constant<int, 7>()); break;
    default: fn(std::integral_constant<int, 8>()); break;
  }
}

// Calls fn(std::integral_constant<int, n>()) for n = min(n, Max) keys (Max >= 1): the forward's last chunk.
template <int Max, typename F>
inline void with_keys_upto(int64_t n, F&& fn) {
  if constexpr (Max == 1) {
    fn(std::integral_constant<int, 1>());
  } else {
    if (n >= Max) {
      fn(std::integral_constant<int, Max>());
    } else {
      with_keys_upto<Max - 1>(n, fn);
    }
  }
}

// acc[jj][h] += Σ_c xT[c·ld + h·R] · y[jj·n + c] over c < n: KG rows of y (row length n) against QV vectors of the
// transposed xT's columns (row stride ld), each broadcast element of y feeding QV multiply-adds. The scores q·kᵀ
// (forward and backward) and the backward's dP = g·vᵀ.
template <typename T, int KG, int QV>
inline void lane_products(const T* xT, int64_t ld, const T* y, int64_t n, typename KeyVec<T>::type (&acc)[KG][QV]) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  for (int64_t c = 0; c < n; ++c) {
    VT xv[QV];
#pragma GCC unroll 4
    for (int h = 0; h < QV; ++h) xv[h] = load<V>(xT + c * ld + h * R);
#pragma GCC unroll 16
    for (int jj = 0; jj < KG; ++jj) {
      const T yv = y[jj * n + c];  // one broadcast for QV vectors
#pragma GCC unroll 4
      for (int h = 0; h < QV; ++h) acc[jj][h] += xv[h] * yv;
    }
  }
}

// One chunk of KC keys (from key j0) for the QV·R queries of qt (QV vectors of R = KeyVec<T>::lanes queries;
// column offset into qT, row stride ldq): updates the running max m[QV], sum l[QV] and output oT [dv, QV·R].
// Each lane's arithmetic is the same whatever QV is (a query's result depends on KC, not on its tile).
template <typename T, int KC, int QV>
inline void lane_chunk(const T* qt, int64_t ldq, const T* k, const T* v, int64_t d, int64_t dv, T scale,
                       typename KeyVec<T>::type (&m)[QV], typename KeyVec<T>::type (&l)[QV], T* oT) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  const T inf = std::numeric_limits<T>::infinity();
  VT s[KC][QV] = {};
  lane_products<T, KC, QV>(qt, ldq, k, d, s);
  const VT ninf = splat<V>(-inf), zero = splat<V>(T(0)), one = splat<V>(T(1));
  VT alpha[QV];
#pragma GCC unroll 4
  for (int h = 0; h < QV; ++h) {
    VT mx = s[0][h] * scale;
    s[0][h] = mx;
#pragma GCC unroll 16
    for (int jj = 1; jj < KC; ++jj) {
      s[jj][h] *= scale;
      mx = s[jj][h] > mx ? s[jj][h] : mx;  // a NaN score never wins: its exp below makes the row NaN
    }
    const VT m_new = mx > m[h] ? mx : m[h];
    const VT shift = m_new == ninf ? zero : m_new;  // no −inf − (−inf) while a row is all −inf
    // 1 where the max stays (also a row still all −inf), 0 on a row's first finite chunk (o and l still 0)
    // AVX2: the arguments below are <= 0 (or NaN), vexp's upper clamp left out (same results)
    constexpr bool nonpos = QV > 1;
    alpha[h] = m_new == m[h] ? one : (m[h] == ninf ? zero : vexp<kVecBytes, nonpos>(m[h] - shift));
    VT psum = zero;
#pragma GCC unroll 16
    for (int jj = 0; jj < KC; ++jj) {
      s[jj][h] = vexp<kVecBytes, nonpos>(s[jj][h] - shift);
      psum += s[jj][h];
    }
    l[h] = l[h] * alpha[h] + psum;
    m[h] = m_new;
  }
  for (int64_t f = 0; f < dv; ++f) {
    VT acc[QV];
#pragma GCC unroll 4
    for (int h = 0; h < QV; ++h) acc[h] = load<V>(oT + f * QV * R + h * R) * alpha[h];
#pragma GCC unroll 16
    for (int jj = 0; jj < KC; ++jj) {
      const T vv = v[jj * dv + f];
#pragma GCC unroll 4
      for (int h = 0; h < QV; ++h) acc[h] += s[jj][h] * vv;
    }
#pragma GCC unroll 4
    for (int h = 0; h < QV; ++h) store<V>(oT + f * QV * R + h * R, acc[h]);
  }
}

// The forward's long chunks: 16 keys with 32 vector registers (AVX-512), which halves the per-chunk costs
// (the running max's rescaling exp and the output's load, rescale and store): 3-5% faster at d = 8-32 than
// chunks of 8 (one thread, AMD EPYC); else kLaneKeys.
constexpr int kWideKeys = kVecBytes == 64 ? 2 * kLaneKeys : kLaneKeys;

// AVX2 (16 vector registers, no broadcast operand of an FMA): tiles of two query vectors (16 floats) against
// chunks of 6 keys, 12 score accumulators + 2 query vectors + 1 broadcast key element, so each broadcast key
// element (and value element) feeds two FMAs instead of one, and 12 independent chains cover the FMA latency.
// A tile's last vector of queries alone (N mod 16 <= 8) runs as a one-vector tile with the chunks of kWideKeys.
constexpr int kQueryVecs = kVecBytes == 32 ? 2 : 1;
constexpr int kTileKeys = kQueryVecs == 2 ? 6 : kWideKeys;

// One tile of `rows` queries (rows <= QV·R; more than (QV − 1)·R when QV > 1) of sample b against all its keys.
// qs: the tile's queries in T, row-major; ys: its output rows in T; lse: the tile's first log-sum-exp.
template <typename T, int QV>
inline void lane_forward_tile(const T* qs, int64_t rows, const T* kb, const T* vb, T* ys, T* lse, int64_t M,
                              int64_t d, int64_t dv, T scale, T* qT, T* oT) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes, RT = QV * R;
  constexpr int KC = QV > 1 ? kTileKeys : kWideKeys;
  // A full tile with d (dv below) a multiple of R: vector transposes of R×R blocks (the element-wise
  // copies cost about a third of the forward at N = 144, M = 36, d = 16).
  if (rows == RT && d % R == 0) {
    for (int h = 0; h < QV; ++h)
      for (int64_t c0 = 0; c0 < d; c0 += R) {
        VT a[R];
        for (int r = 0; r < R; ++r) a[r] = load<V>(qs + (h * R + r) * d + c0);
        transpose_block<V>(a);
        for (int c = 0; c < R; ++c) store<V>(qT + (c0 + c) * RT + h * R, a[c]);
      }
  } else {
    for (int64_t c = 0; c < d; ++c)
      for (int r = 0; r < RT; ++r) qT[c * RT + r] = r < rows ? qs[r * d + c] : T(0);
  }
  std::fill(oT, oT + dv * RT, T(0));
  VT m[QV], l[QV];
  for (int h = 0; h < QV; ++h) {
    m[h] = splat<V>(-std::numeric_limits<T>::infinity());
    l[h] = splat<V>(T(0));
  }
  int64_t j0 = 0;
  // whole chunks called directly (the hot loop stays flat): KC where the registers hold their scores
  for (; j0 + KC <= M; j0 += KC)
    lane_chunk<T, KC, QV>(qT, RT, kb + j0 * d, vb + j0 * dv, d, dv, scale, m, l, oT);
  if constexpr (KC > kLaneKeys) {
    for (; j0 + kLaneKeys <= M; j0 += kLaneKeys)
      lane_chunk<T, kLaneKeys, QV>(qT, RT, kb + j0 * d, vb + j0 * dv, d, dv, scale, m, l, oT);
  }
  if (j0 < M) {
    with_keys_upto<std::min<int>(KC, kLaneKeys) - 1>(M - j0, [&](auto kc) {
      lane_chunk<T, decltype(kc)::value, QV>(qT, RT, kb + j0 * d, vb + j0 * dv, d, dv, scale, m, l, oT);
    });
  }
  for (int h = 0; h < QV; ++h) {
    const VT lse_v = m[h] + vlog<kVecBytes>(l[h]);
    for (int r = 0; r < R && h * R + r < rows; ++r) lse[h * R + r] = lse_v[r];
  }
  if (rows == RT && dv % R == 0) {
    for (int h = 0; h < QV; ++h)
      for (int64_t f0 = 0; f0 < dv; f0 += R) {
        VT a[R];
        for (int f = 0; f < R; ++f) a[f] = load<V>(oT + (f0 + f) * RT + h * R) / l[h];
        transpose_block<V>(a);
        for (int r = 0; r < R; ++r) store<V>(ys + (h * R + r) * dv + f0, a[r]);
      }
  } else {
    for (int64_t f = 0; f < dv; ++f)
      for (int h = 0; h < QV; ++h) store<V>(oT + f * RT + h * R, load<V>(oT + f * RT + h * R) / l[h]);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t f = 0; f < dv; ++f) ys[r * dv + f] = oT[f * RT + r];
  }
}

// Forward over tiles of kQueryVecs·R queries: a work unit is (batch b, tile), which meets every key in turn. In
// is the tensors' type (T, or float16/bfloat16 with T = float: read into T scratch, the output rounded once; lse
// T).
template <typename T, typename In>
void lane_forward_kernel(const In* q, const In* k, const In* v, In* out, T* lse, int64_t B, int64_t N, int64_t M,
                         int64_t d, int64_t dv, T scale) {
  constexpr int R = KeyVec<T>::lanes, RT = kQueryVecs * R;
  constexpr bool same = std::is_same_v<T, In>;
  const int64_t tiles = (N + RT - 1) / RT;
  at::parallel_for(0, B * tiles, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> qT(d * RT), oT(dv * RT), kf(same ? 0 : M * d), vf(same ? 0 : M * dv), qrows(same ? 0 : RT * d),
        yrows(same ? 0 : RT * dv);
    int64_t converted = -1;  // the sample whose k and v kf and vf hold
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / tiles, i0 = (u % tiles) * RT, rows = std::min<int64_t>(RT, N - i0);
      const In* qb = q + (b * N + i0) * d;
      const T* kb;
      const T* vb;
      if constexpr (same) {
        kb = k + b * M * d;
        vb = v + b * M * dv;
      } else {
        if (converted != b) {
          to_compute(k + b * M * d, M * d, kf.data());
          to_compute(v + b * M * dv, M * dv, vf.data());
          converted = b;
        }
        kb = kf.data();
        vb = vf.data();
      }
      const T* qs;  // the tile's queries in T, row-major
      if constexpr (same) {
        qs = qb;
      } else {
        to_compute(qb, rows * d, qrows.data());
        qs = qrows.data();
      }
      In* y = out + (b * N + i0) * dv;
      T* ys;  // the tile's output rows in T
      if constexpr (same) {
        ys = y;
      } else {
        ys = yrows.data();
      }
      if (kQueryVecs == 1 || rows <= R) {
        lane_forward_tile<T, 1>(qs, rows, kb, vb, ys, lse + b * N + i0, M, d, dv, scale, qT.data(), oT.data());
      } else {
        lane_forward_tile<T, kQueryVecs>(qs, rows, kb, vb, ys, lse + b * N + i0, M, d, dv, scale, qT.data(),
                                         oT.data());
      }
      if constexpr (!same) from_compute(ys, rows * dv, y);
    }
  });
}

// dst[j, c] = mul · Σ_{i < N} W[j, i] · x[i, c] for KG keys (W [KG, ldw]) and the feature vectors from f0 to f1
// (FN at a time; x [N, ldx]; dst [KG, width], written for c < width).
template <typename T, int KG, int FN, typename Out>
inline void keys_rows_block(const T* W, int64_t ldw, const T* x, int64_t ldx, int64_t N, int64_t f0, int64_t f1,
                            int64_t width, T mul, Out* dst) {
  using FV = FeatVec<T, kFeatureBytes>;
  using FT = typename FV::type;
  constexpr int L = FV::lanes;
  for (; f0 + FN * L <= f1; f0 += FN * L) {
    FT acc[KG][FN] = {};
    for (int64_t i = 0; i < N; ++i) {
      FT xv[FN];
#pragma GCC unroll 4
      for (int h = 0; h < FN; ++h) xv[h] = load<FV>(x + i * ldx + f0 + h * L);
#pragma GCC unroll 8
      for (int jj = 0; jj < KG; ++jj) {
        const T w = W[jj * ldw + i];
#pragma GCC unroll 4
        for (int h = 0; h < FN; ++h) acc[jj][h] += w * xv[h];
      }
    }
    for (int h = 0; h < FN; ++h) {
      const int64_t c0 = f0 + h * L, c1 = std::min<int64_t>(c0 + L, width);
      for (int jj = 0; jj < KG; ++jj)
        for (int64_t c = c0; c < c1; ++c) dst[jj * width + c] = static_cast<Out>(acc[jj][h][c - c0] * mul);
    }
  }
}

// keys_rows_block over all of x's feature vectors, two at a time (the last one alone where their number is odd).
template <typename T, int KG, typename Out>
inline void keys_rows_group(const T* W, int64_t ldw, const T* x, int64_t ldx, int64_t N, int64_t width, T mul,
                            Out* dst) {
  constexpr int L = FeatVec<T, kFeatureBytes>::lanes;
  const int64_t pairs = ldx / (2 * L) * (2 * L);
  keys_rows_block<T, KG, 2>(W, ldw, x, ldx, N, 0, pairs, width, mul, dst);
  if (pairs < ldx) keys_rows_block<T, KG, 1>(W, ldw, x, ldx, N, pairs, ldx, width, mul, dst);
}

// The backward's scores for QV vectors of queries (from i0) and KG keys (AVX2: 2 × 4, within the registers): the
// probabilities P are stored before dP is summed (so the two sets of accumulators are not live together), dS
// then kept in registers for dq. Each lane's arithmetic is that of lane_backward_chunk's one-vector loop.
template <typename T, int KG, int QV>
inline void lane_backward_group(const T* qT, const T* gT, const T* lse, const T* delta, const T* k, const T* v,
                                int64_t i0, int64_t Np, int64_t d, int64_t dv, T scale, T* dqT, T* P, T* DS) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  VT a[KG][QV] = {};
  lane_products<T, KG, QV>(qT + i0, Np, k, d, a);
  for (int h = 0; h < QV; ++h) {
    const VT lv = load<V>(lse + i0 + h * R);
#pragma GCC unroll 8
    for (int jj = 0; jj < KG; ++jj) store<V>(P + jj * Np + i0 + h * R, vexp<kVecBytes>(a[jj][h] * scale - lv));
  }
  VT b[KG][QV] = {};
  lane_products<T, KG, QV>(gT + i0, Np, v, dv, b);
  for (int h = 0; h < QV; ++h) {
    const VT dlt = load<V>(delta + i0 + h * R);
#pragma GCC unroll 8
    for (int jj = 0; jj < KG; ++jj) {
      b[jj][h] = load<V>(P + jj * Np + i0 + h * R) * (b[jj][h] - dlt);
      store<V>(DS + jj * Np + i0 + h * R, b[jj][h]);
    }
  }
  for (int64_t c = 0; c < d; ++c) {
    VT acc[QV];
#pragma GCC unroll 4
    for (int h = 0; h < QV; ++h) acc[h] = load<V>(dqT + c * Np + i0 + h * R);
#pragma GCC unroll 8
    for (int jj = 0; jj < KG; ++jj) {
      const T kv = k[jj * d + c];
#pragma GCC unroll 4
      for (int h = 0; h < QV; ++h) acc[h] += b[jj][h] * kv;
    }
#pragma GCC unroll 4
    for (int h = 0; h < QV; ++h) store<V>(dqT + c * Np + i0 + h * R, acc[h]);
  }
}

// One chunk of KC keys (from key j0: k and v point at it) against every tile of the sample (see above).
template <typename T, int KC, typename Out>
inline void lane_backward_chunk(const T* qT, const T* gT, const T* qp, const T* gp, const T* lse, const T* delta,
                                const T* k, const T* v, int64_t N, int64_t Np, int64_t d, int64_t dp, int64_t dv,
                                int64_t dvp, T scale, T* dqT, T* P, T* DS, Out* dk, Out* dvo) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  int64_t i0 = 0;
  if constexpr (kQueryVecs == 2) {  // AVX2: two query vectors at a time, keys in groups of 4; a last vector alone
    constexpr int KG = KC < 4 ? KC : 4;
    for (; i0 + 2 * R <= Np; i0 += 2 * R) {
      lane_backward_group<T, KG, 2>(qT, gT, lse, delta, k, v, i0, Np, d, dv, scale, dqT, P, DS);
      if constexpr (KC > 4)
        lane_backward_group<T, KC - 4, 2>(qT, gT, lse, delta, k + 4 * d, v + 4 * dv, i0, Np, d, dv, scale, dqT,
                                          P + 4 * Np, DS + 4 * Np);
    }
  }
  for (; i0 < Np; i0 += R) {
    VT s[KC] = {}, dp[KC] = {};
    for (int64_t c = 0; c < d; ++c) {
      const VT qv = load<V>(qT + c * Np + i0);
#pragma GCC unroll 8
      for (int jj = 0; jj < KC; ++jj) s[jj] += qv * k[jj * d + c];
    }
    for (int64_t f = 0; f < dv; ++f) {
      const VT gv = load<V>(gT + f * Np + i0);
#pragma GCC unroll 8
      for (int jj = 0; jj < KC; ++jj) dp[jj] += gv * v[jj * dv + f];
    }
    // Lanes past N hold junk (their dq is dropped, and dk, dv below sum over the first N queries only).
    const VT lv = load<V>(lse + i0), dlt = load<V>(delta + i0);
    for (int jj = 0; jj < KC; ++jj) {
      s[jj] = vexp<kVecBytes>(s[jj] * scale - lv);
      dp[jj] = s[jj] * (dp[jj] - dlt);
      store<V>(P + jj * Np + i0, s[jj]);
      store<V>(DS + jj * Np + i0, dp[jj]);
    }
    for (int64_t c = 0; c < d; ++c) {
      VT acc = load<V>(dqT + c * Np + i0);
#pragma GCC unroll 8
      for (int jj = 0; jj < KC; ++jj) acc += dp[jj] * k[jj * d + c];
      store<V>(dqT + c * Np + i0, acc);
    }
  }
  // dk = scale · Σ_i dS[i, j] q[i, :], dv = Σ_i P[i, j] g[i, :]: features in lanes (q and g row-major,
  // padded to whole feature vectors), one vector of each key's gradient in a register over all queries. AVX2
  // (kQueryVecs = 2): groups of up to 4 keys × 2 feature vectors, so one broadcast of P or dS feeds two FMAs.
  auto keys_times_rows = [&](const T* W, const T* x, int64_t ldx, int64_t width, T mul, Out* dst) {
    if constexpr (kQueryVecs == 2) {
      constexpr int KG = KC < 4 ? KC : 4;
      keys_rows_group<T, KG>(W, Np, x, ldx, N, width, mul, dst);
      if constexpr (KC > 4) keys_rows_group<T, KC - 4>(W + 4 * Np, Np, x, ldx, N, width, mul, dst + 4 * width);
    } else {
      keys_rows_block<T, KC, 1>(W, Np, x, ldx, N, 0, ldx, width, mul, dst);
    }
  };
  keys_times_rows(DS, qp, dp, d, scale, dk);
  keys_times_rows(P, gp, dvp, dv, T(1), dvo);
}

// Backward units: (batch b, key chunks [c0, c1) of kLaneKeys keys, the last one shorter). Each unit lays out
// its sample itself (qT, gT, the feature-padded q and g where d or dv is not a whole number of feature
// vectors, lse, Δ = rowsum(g ∘ out)), in its own scratch: no whole-batch copies before the kernel. With one
// part per sample the unit writes dq itself; else its dq partial goes to dq_part [parts, B, d, Np] (zeroed
// here), which the caller sums in part order. q, g, out [B, N, ·], lse [B, N], k, v [B, M, ·] contiguous.
// In is the tensors' type (T, or float16/bfloat16 with T = float: each unit converts its sample's q, g, out and
// each chunk's k, v into T scratch, gradients rounded once; lse and dq_part T).
template <typename T, typename In>
void lane_backward_kernel(const In* q, const In* g, const In* out, const T* lse, const In* k, const In* v, In* dq,
                          T* dq_part, In* dk, In* dvo, int64_t B, int64_t N, int64_t M, int64_t Np, int64_t d,
                          int64_t dv, int64_t parts, T scale) {
  using FV = FeatVec<T, kFeatureBytes>;
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  constexpr bool same = std::is_same_v<T, In>;
  const int64_t chunks = (M + kLaneKeys - 1) / kLaneKeys;
  const int64_t dp = round_up(d, FV::lanes), dvp = round_up(dv, FV::lanes);
  const bool qcopy = dp != d, gcopy = dvp != dv;
  at::parallel_for(0, B * parts, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> P(kLaneKeys * Np), DS(kLaneKeys * Np), qT(d * Np, T(0)), gT(dv * Np, T(0)), lv(Np, T(0)),
        delta(Np, T(0)), dqT(parts == 1 ? d * Np : 0), qpad(qcopy ? N * dp : 0, T(0)),
        gpad(gcopy ? N * dvp : 0, T(0)), kf(same ? 0 : kLaneKeys * d), vf(same ? 0 : kLaneKeys * dv),
        qs_(same ? 0 : N * d), gs_(same ? 0 : N * dv), os_(same ? 0 : N * dv), dqs_(same || parts > 1 ? 0 : N * d);
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / parts, part = u % parts;
      const int64_t c0 = part * chunks / parts, c1 = (part + 1) * chunks / parts;
      const T *qs, *gs, *os;  // the sample's q, g and out in T, row-major
      if constexpr (same) {
        qs = q + b * N * d, gs = g + b * N * dv, os = out + b * N * dv;
      } else {
        to_compute(q + b * N * d, N * d, qs_.data());
        to_compute(g + b * N * dv, N * dv, gs_.data());
        to_compute(out + b * N * dv, N * dv, os_.data());
        qs = qs_.data(), gs = gs_.data(), os = os_.data();
      }
      // Whole tiles of R rows with d and dv multiples of R (no feature padding then): q, g and out transposed
      // by R×R blocks with vector shuffles, Δ as R lanes; the rest row by row.
      int64_t i = 0;
      if (d % R == 0 && dv % R == 0) {
        for (; i + R <= N; i += R) {
          VT a[R], o[R], total = {};
          for (int64_t f0 = 0; f0 < d; f0 += R) {
            for (int r = 0; r < R; ++r) a[r] = load<V>(qs + (i + r) * d + f0);
            transpose_block<V>(a);
            for (int c = 0; c < R; ++c) store<V>(qT.data() + (f0 + c) * Np + i, a[c]);
          }
          for (int64_t f0 = 0; f0 < dv; f0 += R) {
            for (int r = 0; r < R; ++r) {
              a[r] = load<V>(gs + (i + r) * dv + f0);
              o[r] = load<V>(os + (i + r) * dv + f0);
            }
            transpose_block<V>(a);
            transpose_block<V>(o);
            for (int f = 0; f < R; ++f) {
              store<V>(gT.data() + (f0 + f) * Np + i, a[f]);
              total += a[f] * o[f];
            }
          }
          store<V>(delta.data() + i, total);
          store<V>(lv.data() + i, load<V>(lse + b * N + i));
        }
      }
      for (; i < N; ++i) {
        T total = 0;
        for (int64_t c = 0; c < d; ++c) qT[c * Np + i] = qs[i * d + c];
        for (int64_t f = 0; f < dv; ++f) {
          gT[f * Np + i] = gs[i * dv + f];
          total += gs[i * dv + f] * os[i * dv + f];
        }
        delta[i] = total;
        lv[i] = lse[b * N + i];
        if (qcopy) std::copy(qs + i * d, qs + (i + 1) * d, qpad.data() + i * dp);
        if (gcopy) std::copy(gs + i * dv, gs + (i + 1) * dv, gpad.data() + i * dvp);
      }
      const T* qpb = qcopy ? qpad.data() : qs;
      const T* gpb = gcopy ? gpad.data() : gs;
      T* dqb = parts == 1 ? dqT.data() : dq_part + (part * B + b) * d * Np;
      std::fill(dqb, dqb + d * Np, T(0));
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t j0 = ch * kLaneKeys, n = std::min<int64_t>(kLaneKeys, M - j0);
        const In *kin = k + (b * M + j0) * d, *vin = v + (b * M + j0) * dv;
        const T* kj;
        const T* vj;
        if constexpr (same) {
          kj = kin;
          vj = vin;
        } else {
          to_compute(kin, n * d, kf.data());
          to_compute(vin, n * dv, vf.data());
          kj = kf.data();
          vj = vf.data();
        }
        In *dkj = dk + (b * M + j0) * d, *dvj = dvo + (b * M + j0) * dv;
        with_chunk_keys(n, [&](auto kc) {
          lane_backward_chunk<T, decltype(kc)::value>(qT.data(), gT.data(), qpb, gpb, lv.data(), delta.data(), kj, vj,
                                                      N, Np, d, dp, dv, dvp, scale, dqb, P.data(), DS.data(), dkj, dvj);
        });
      }
      if (parts == 1) {  // dq = scale · dqT transposed (whole tiles by R×R blocks), rows in T, then to In
        T* dqr;
        if constexpr (same) {
          dqr = dq + b * N * d;
        } else {
          dqr = dqs_.data();
        }
        int64_t i = 0;
        if (d % R == 0) {
          for (; i + R <= N; i += R) {
            for (int64_t c0 = 0; c0 < d; c0 += R) {
              VT a[R];
              for (int c = 0; c < R; ++c) a[c] = load<V>(dqT.data() + (c0 + c) * Np + i) * scale;
              transpose_block<V>(a);
              for (int r = 0; r < R; ++r) store<V>(dqr + (i + r) * d + c0, a[r]);
            }
          }
        }
        for (; i < N; ++i)
          for (int64_t c = 0; c < d; ++c) dqr[i * d + c] = dqT[c * Np + i] * scale;
        if constexpr (!same) from_compute(dqr, N * d, dq + b * N * d);
      }
    }
  });
}

}  // namespace SROPS_NL_ISA
// NOLINTEND
