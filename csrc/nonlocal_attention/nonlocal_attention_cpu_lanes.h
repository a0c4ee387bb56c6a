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
// scratch qT [d, R] (a tile's queries transposed, zero past N) and oT [dv, R].
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

// One chunk of KC keys (from key j0) for the R queries of qt (column offset into qT, row stride ldq):
// updates the running max m, sum l and output oT [dv, R].
template <typename T, int KC>
inline void lane_chunk(const T* qt, int64_t ldq, const T* k, const T* v, int64_t d, int64_t dv, T scale,
                       typename KeyVec<T>::type& m, typename KeyVec<T>::type& l, T* oT) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  const T inf = std::numeric_limits<T>::infinity();
  VT s[KC] = {};
  for (int64_t c = 0; c < d; ++c) {
    const VT qv = load<V>(qt + c * ldq);
#pragma GCC unroll 16
    for (int jj = 0; jj < KC; ++jj) s[jj] += qv * k[jj * d + c];
  }
  VT mx = s[0] * scale;
  s[0] = mx;
#pragma GCC unroll 16
  for (int jj = 1; jj < KC; ++jj) {
    s[jj] *= scale;
    mx = s[jj] > mx ? s[jj] : mx;  // a NaN score never wins: its exp below makes the row NaN
  }
  const VT ninf = splat<V>(-inf), zero = splat<V>(T(0)), one = splat<V>(T(1));
  const VT m_new = mx > m ? mx : m;
  const VT shift = m_new == ninf ? zero : m_new;  // no −inf − (−inf) while a row is all −inf
  // 1 where the max stays (also a row still all −inf), 0 on a row's first finite chunk (o and l still 0)
  const VT alpha = m_new == m ? one : (m == ninf ? zero : vexp<kVecBytes>(m - shift));
  VT psum = zero;
#pragma GCC unroll 16
  for (int jj = 0; jj < KC; ++jj) {
    s[jj] = vexp<kVecBytes>(s[jj] - shift);
    psum += s[jj];
  }
  l = l * alpha + psum;
  m = m_new;
  for (int64_t f = 0; f < dv; ++f) {
    VT acc = load<V>(oT + f * R) * alpha;
#pragma GCC unroll 16
    for (int jj = 0; jj < KC; ++jj) acc += s[jj] * v[jj * dv + f];
    store<V>(oT + f * R, acc);
  }
}

// The forward's long chunks: 16 keys with 32 vector registers (AVX-512), which halves the per-chunk costs
// (the running max's rescaling exp and the output's load, rescale and store): 3-5% faster at d = 8-32 than
// chunks of 8 (one thread, AMD EPYC); else kLaneKeys.
constexpr int kWideKeys = kVecBytes == 64 ? 2 * kLaneKeys : kLaneKeys;

// Forward over tiles of R queries: a work unit is (batch b, tile), which meets every key in turn. In is the
// tensors' type (T, or float16/bfloat16 with T = float: read into T scratch, the output rounded once; lse T).
template <typename T, typename In>
void lane_forward_kernel(const In* q, const In* k, const In* v, In* out, T* lse, int64_t B, int64_t N, int64_t M,
                         int64_t d, int64_t dv, T scale) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  constexpr bool same = std::is_same_v<T, In>;
  const int64_t tiles = (N + R - 1) / R;
  at::parallel_for(0, B * tiles, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> qT(d * R), oT(dv * R), kf(same ? 0 : M * d), vf(same ? 0 : M * dv), qrows(same ? 0 : R * d),
        yrows(same ? 0 : R * dv);
    int64_t converted = -1;  // the sample whose k and v kf and vf hold
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / tiles, i0 = (u % tiles) * R, rows = std::min<int64_t>(R, N - i0);
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
      // A full tile with d (dv below) a multiple of R: vector transposes of R×R blocks (the element-wise
      // copies cost about a third of the forward at N = 144, M = 36, d = 16).
      if (rows == R && d % R == 0) {
        for (int64_t c0 = 0; c0 < d; c0 += R) {
          VT a[R];
          for (int r = 0; r < R; ++r) a[r] = load<V>(qs + r * d + c0);
          transpose_block<V>(a);
          for (int c = 0; c < R; ++c) store<V>(qT.data() + (c0 + c) * R, a[c]);
        }
      } else {
        for (int64_t c = 0; c < d; ++c)
          for (int r = 0; r < R; ++r) qT[c * R + r] = r < rows ? qs[r * d + c] : T(0);
      }
      std::fill(oT.begin(), oT.end(), T(0));
      VT m = splat<V>(-std::numeric_limits<T>::infinity()), l = splat<V>(T(0));
      int64_t j0 = 0;
      // whole chunks called directly (the hot loop stays flat): kWideKeys where the registers hold their scores
      for (; j0 + kWideKeys <= M; j0 += kWideKeys)
        lane_chunk<T, kWideKeys>(qT.data(), R, kb + j0 * d, vb + j0 * dv, d, dv, scale, m, l, oT.data());
      for (; j0 + kLaneKeys <= M; j0 += kLaneKeys)
        lane_chunk<T, kLaneKeys>(qT.data(), R, kb + j0 * d, vb + j0 * dv, d, dv, scale, m, l, oT.data());
      if (j0 < M) {
        with_chunk_keys(M - j0, [&](auto kc) {
          lane_chunk<T, decltype(kc)::value>(qT.data(), R, kb + j0 * d, vb + j0 * dv, d, dv, scale, m, l, oT.data());
        });
      }
      const VT lse_v = m + vlog<kVecBytes>(l);
      for (int r = 0; r < rows; ++r) lse[b * N + i0 + r] = lse_v[r];
      In* y = out + (b * N + i0) * dv;
      T* ys;  // the tile's output rows in T
      if constexpr (same) {
        ys = y;
      } else {
        ys = yrows.data();
      }
      if (rows == R && dv % R == 0) {
        for (int64_t f0 = 0; f0 < dv; f0 += R) {
          VT a[R];
          for (int f = 0; f < R; ++f) a[f] = load<V>(oT.data() + (f0 + f) * R) / l;
          transpose_block<V>(a);
          for (int r = 0; r < R; ++r) store<V>(ys + r * dv + f0, a[r]);
        }
      } else {
        for (int64_t f = 0; f < dv; ++f) store<V>(oT.data() + f * R, load<V>(oT.data() + f * R) / l);
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t f = 0; f < dv; ++f) ys[r * dv + f] = oT[f * R + r];
      }
      if constexpr (!same) from_compute(ys, rows * dv, y);
    }
  });
}

// One chunk of KC keys (from key j0: k and v point at it) against every tile of the sample (see above).
template <typename T, int KC, typename Out>
inline void lane_backward_chunk(const T* qT, const T* gT, const T* qp, const T* gp, const T* lse, const T* delta,
                                const T* k, const T* v, int64_t N, int64_t Np, int64_t d, int64_t dp, int64_t dv,
                                int64_t dvp, T scale, T* dqT, T* P, T* DS, Out* dk, Out* dvo) {
  using V = KeyVec<T>;
  using VT = typename V::type;
  constexpr int R = V::lanes;
  for (int64_t i0 = 0; i0 < Np; i0 += R) {
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
  // padded to whole feature vectors), one vector of each key's gradient in a register over all queries.
  using FV = FeatVec<T, kFeatureBytes>;
  auto keys_times_rows = [&](const T* W, const T* x, int64_t ldx, int64_t width, T mul, Out* dst) {
    for (int64_t f0 = 0; f0 < ldx; f0 += FV::lanes) {
      typename FV::type acc[KC] = {};
      for (int64_t i = 0; i < N; ++i) {
        const typename FV::type xv = load<FV>(x + i * ldx + f0);
#pragma GCC unroll 8
        for (int jj = 0; jj < KC; ++jj) acc[jj] += W[jj * Np + i] * xv;
      }
      const int64_t f1 = std::min<int64_t>(f0 + FV::lanes, width);
      for (int jj = 0; jj < KC; ++jj)
        for (int64_t c = f0; c < f1; ++c) dst[jj * width + c] = static_cast<Out>(acc[jj][c - f0] * mul);
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
