// Kernel templates of nonlocal_attention_cpu.cpp, included there once per instruction set inside
// `namespace SROPS_NL_ISA` under that set's target pragma (see there). Include nothing here: every
// header this code uses is included by nonlocal_attention_cpu.cpp before.
//
// Vectors are GCC vector extensions of a fixed byte width (the compiler splits a 64-byte vector into
// two AVX2 or four SSE registers where the target has no 512-bit ones), so one source serves every
// instruction set. Layouts (all contiguous, zero-padded; see nonlocal_attention_cpu.cpp):
//   qp [B, Np, dp]   kp [B, Mp, dp]   kT [B, d, Mp]   vp [B, Mp, dvp]   vT [B, dv, Mp]   gp [B, Np, dvp]
// with Np a multiple of kRows, Mp of the key block, dp and dvp of the feature vector's lanes.
// NOLINTBEGIN
namespace SROPS_NL_ISA {

template <typename T, int Bytes>
struct Vec;

#define SROPS_NL_VEC(T, I, BYTES)                                                          \
  template <>                                                                              \
  struct Vec<T, BYTES> {                                                                   \
    typedef T type __attribute__((vector_size(BYTES)));                                    \
    typedef T unaligned __attribute__((vector_size(BYTES), aligned(sizeof(T)), may_alias)); \
    typedef I mask __attribute__((vector_size(BYTES)));                                    \
    static constexpr int lanes = BYTES / sizeof(T);                                        \
  };
SROPS_NL_VEC(float, int32_t, 16)
SROPS_NL_VEC(float, int32_t, 32)
SROPS_NL_VEC(float, int32_t, 64)
SROPS_NL_VEC(double, int64_t, 16)
SROPS_NL_VEC(double, int64_t, 32)
SROPS_NL_VEC(double, int64_t, 64)
#undef SROPS_NL_VEC

// This instruction set's register width in bytes (SROPS_NL_VBYTES), the key vectors of a block
// (always kBlockBytes of keys, so blocks are alike on every instruction set) and the feature vector
// for a padding of FB bytes.
constexpr int kVecBytes = SROPS_NL_VBYTES;
constexpr int kKeyVecs = kBlockBytes / kVecBytes;
template <typename T>
using KeyVec = Vec<T, kVecBytes>;
template <typename T, int FB>
using FeatVec = Vec<T, (FB < kVecBytes ? FB : kVecBytes)>;

template <typename V, typename T>
inline typename V::type load(const T* p) {
  return *reinterpret_cast<const typename V::unaligned*>(p);
}

template <typename V, typename T>
inline void store(T* p, typename V::type x) {
  *reinterpret_cast<typename V::unaligned*>(p) = x;
}

template <typename V, typename T>
inline typename V::type splat(T s) {
  typename V::type x = {};
  return x + s;
}

// Lane i's partner i ^ w, for a butterfly reduction over w = lanes/2, lanes/4, ..., 1.
template <typename V, int W>
inline typename V::type swap_lanes(typename V::type x) {
  typename V::mask idx;
  for (int i = 0; i < V::lanes; ++i) idx[i] = i ^ W;
  return __builtin_shuffle(x, idx);
}

template <typename V, int W = V::lanes / 2>
inline typename V::type butterfly_max(typename V::type x) {
  if constexpr (W == 0) {
    return x;
  } else {
    const typename V::type y = swap_lanes<V, W>(x);
    return butterfly_max<V, W / 2>(y > x ? y : x);
  }
}

template <typename V, int W = V::lanes / 2>
inline typename V::type butterfly_sum(typename V::type x) {
  if constexpr (W == 0) {
    return x;
  } else {
    return butterfly_sum<V, W / 2>(x + swap_lanes<V, W>(x));
  }
}

// The largest lane (a NaN lane may or may not win; the kernels' exp then makes the row NaN anyway).
template <typename V, typename T>
inline T hmax(typename V::type x) {
  return butterfly_max<V>(x)[0];
}

template <typename V, typename T>
inline T hsum(typename V::type x) {
  return butterfly_sum<V>(x)[0];
}

// exp of each lane. float: Cephes' expf polynomial on x − n·ln2 with 2ⁿ built in the exponent bits
// (about 1 ulp; inputs below −87.34 give 0, above 88.3 give inf, NaN stays NaN, as the kernels only
// take exp of x − max ≤ 0 or of a score minus its row's log-sum-exp). double: the C library's exp.
// NonPos: the caller's inputs are <= 0 or NaN (a score minus its running max), whose results are the same
// without the upper clamp and the inf select (two compares and two blends fewer).
template <int BYTES, bool NonPos = false>
inline typename Vec<float, BYTES>::type vexp(typename Vec<float, BYTES>::type x) {
  using V = Vec<float, BYTES>;
  using I = typename V::mask;
  const typename V::type orig = x;
  x = x < -88.0f ? splat<V>(-88.0f) : x;  // a NaN compares false and stays
  if constexpr (!NonPos) x = x > 88.3f ? splat<V>(88.3f) : x;
  const float shifter = 12582912.0f;  // 1.5·2²³: adding it rounds to an integer in the low mantissa bits
  const typename V::type t = x * 1.44269504088896341f + shifter;
  const typename V::type n = t - shifter;
  const I ni = reinterpret_cast<I>(t) - 0x4B400000;  // the bits of 1.5·2²³
  typename V::type r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  typename V::type p = splat<V>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  typename V::type y = p * (r * r) + r + 1.0f;
  y = y * reinterpret_cast<typename V::type>((ni + 127) << 23);
  y = orig < -87.33654f ? splat<V>(0.0f) : y;
  if constexpr (!NonPos) y = orig > 88.3f ? splat<V>(std::numeric_limits<float>::infinity()) : y;
  return y;
}

template <int BYTES, bool NonPos = false>
inline typename Vec<double, BYTES>::type vexp(typename Vec<double, BYTES>::type x) {
  typename Vec<double, BYTES>::type y;
  for (int i = 0; i < Vec<double, BYTES>::lanes; ++i) y[i] = std::exp(x[i]);
  return y;
}

// Natural log of each lane, for the kernels' row sums (0, or at least 1: no subnormal inputs). float: Cephes'
// logf polynomial on the mantissa taken to [√½, √2) (about 1 ulp); 0 gives −inf, +inf stays, NaN stays NaN.
// double: the C library's log.
template <int BYTES>
inline typename Vec<float, BYTES>::type vlog(typename Vec<float, BYTES>::type x) {
  using V = Vec<float, BYTES>;
  using VT = typename V::type;
  using I = typename V::mask;
  const I bits = reinterpret_cast<I>(x);
  VT e = __builtin_convertvector(((bits >> 23) & 0xff) - 126, VT);  // x = m · 2^e with m in [0.5, 1)
  VT m = reinterpret_cast<VT>((bits & 0x007fffff) | 0x3f000000);
  const auto low = m < 0.707106781186547524f;
  e = low ? e - 1.0f : e;
  m = low ? m + m - 1.0f : m - 1.0f;
  const VT z = m * m;
  VT y = splat<V>(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z + e * -2.12194440e-4f - 0.5f * z;
  VT r = m + y + e * 0.693359375f;
  r = x == 0.0f ? splat<V>(-std::numeric_limits<float>::infinity()) : r;
  r = x == std::numeric_limits<float>::infinity() ? x : r;
  return x != x ? x : r;
}

template <int BYTES>
inline typename Vec<double, BYTES>::type vlog(typename Vec<double, BYTES>::type x) {
  typename Vec<double, BYTES>::type y;
  for (int i = 0; i < Vec<double, BYTES>::lanes; ++i) y[i] = std::log(x[i]);
  return y;
}

// n values of a tensor's type In into the compute type T and back: a copy for the same type; bfloat16 as
// vectors (its 16 bits widened into a float's high half; back rounded to nearest even, NaN to the quiet 0x7FC0,
// as c10::BFloat16 does), float16 value by value.
template <typename T, typename In>
inline void to_compute(const In* src, int64_t n, T* dst) {
  int64_t i = 0;
  if constexpr (std::is_same_v<In, c10::BFloat16> && std::is_same_v<T, float>) {
    constexpr int L = kVecBytes / 4;
    typedef uint16_t H __attribute__((vector_size(L * 2), aligned(2), may_alias));
    typedef uint32_t W __attribute__((vector_size(L * 4)));
    for (; i + L <= n; i += L) {
      const W w = __builtin_convertvector(*reinterpret_cast<const H*>(src + i), W) << 16;
      store<Vec<float, kVecBytes>>(dst + i, reinterpret_cast<typename Vec<float, kVecBytes>::type>(w));
    }
  }
  for (; i < n; ++i) dst[i] = static_cast<T>(src[i]);
}

template <typename T, typename In>
inline void from_compute(const T* src, int64_t n, In* dst) {
  int64_t i = 0;
  if constexpr (std::is_same_v<In, c10::BFloat16> && std::is_same_v<T, float>) {
    constexpr int L = kVecBytes / 4;
    using V = Vec<float, kVecBytes>;
    typedef uint16_t H __attribute__((vector_size(L * 2), aligned(2), may_alias));
    typedef uint32_t W __attribute__((vector_size(L * 4)));
    for (; i + L <= n; i += L) {
      const typename V::type x = load<V>(src + i);
      const W bits = reinterpret_cast<W>(x);
      W r = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
      const W nan = {};
      r = x != x ? nan + 0x7fc0u : r;
      *reinterpret_cast<H*>(dst + i) = __builtin_convertvector(r, H);
    }
  }
  for (; i < n; ++i) dst[i] = static_cast<In>(src[i]);
}

// Transposes the lanes×lanes block a (a[i] is row i) in place: one stage per power of two W < lanes, each
// swapping the off-diagonal W×W blocks of every 2W×2W block with one two-source shuffle per vector.
template <typename V, int W = V::lanes / 2>
inline void transpose_block(typename V::type (&a)[V::lanes]) {
  if constexpr (W > 0) {
    constexpr int R = V::lanes;
    typename V::mask lo, hi;
    for (int k = 0; k < R; ++k) {
      lo[k] = (k & W) ? R + k - W : k;
      hi[k] = (k & W) ? R + k : k + W;
    }
    for (int i = 0; i < R; ++i) {
      if (i & W) continue;
      const typename V::type x = a[i], y = a[i + W];
      a[i] = __builtin_shuffle(x, y, lo);
      a[i + W] = __builtin_shuffle(x, y, hi);
    }
    transpose_block<V, W / 2>(a);
  }
}

// s[r][jv] = scale · Σ_c q[r][c] · kT[c][jv·lanes …], for kRows rows of q (row stride ldq) and NV
// key vectors of kT (row stride ldk).
template <typename T, typename KV, int NV>
inline void block_scores(typename KV::type (&s)[kRows][NV], const T* q, int64_t ldq, const T* kT, int64_t ldk,
                         int64_t d, T scale) {
  for (int jv = 0; jv < NV; ++jv) {
    typename KV::type acc[kRows] = {};
    const T* kc = kT + jv * KV::lanes;
    for (int64_t c = 0; c < d; ++c) {
      const typename KV::type kv = load<KV>(kc + c * ldk);
      for (int r = 0; r < kRows; ++r) acc[r] += q[r * ldq + c] * kv;
    }
    for (int r = 0; r < kRows; ++r) s[r][jv] = acc[r] * scale;
  }
}

// The keys of a block at or past `valid` (the padding after M) are masked to `fill`: one compare and blend
// per vector against the lanes' key numbers (constants).
template <typename KV, int NV, typename T>
inline void mask_keys(typename KV::type (&s)[NV], int64_t valid, T fill) {
  using I = typename KV::mask;
  using L = std::remove_reference_t<decltype(std::declval<I>()[0])>;
  const typename KV::type f = splat<KV>(fill);
  I lim = {};
  lim += static_cast<L>(valid);
  for (int jv = 0; jv < NV; ++jv) {
    I key;
    for (int i = 0; i < KV::lanes; ++i) key[i] = static_cast<L>(jv * KV::lanes + i);
    s[jv] = key < lim ? s[jv] : f;
  }
}

// Calls FN<NV>() for the NV key vectors of the block at j0: whole blocks, then a last one of the
// 64-byte groups (kGroupBytes) that remain.
template <typename T, typename F>
inline void for_key_blocks(int64_t j0, int64_t j1, F&& fn) {
  constexpr int64_t group = kGroupBytes / int64_t(sizeof(T));
  constexpr int GV = kGroupBytes / kVecBytes;
  constexpr int64_t BK = kKeyVecs * KeyVec<T>::lanes;
  for (; j0 < j1; j0 += BK) {
    switch (std::min<int64_t>(BK, j1 - j0) / group) {
      case 1: fn(j0, std::integral_constant<int, GV>()); break;
      case 2: fn(j0, std::integral_constant<int, 2 * GV>()); break;
      case 3: fn(j0, std::integral_constant<int, 3 * GV>()); break;
      default: fn(j0, std::integral_constant<int, kKeyVecs>()); break;
    }
  }
}
static_assert(kKeyVecs * kVecBytes == 4 * kGroupBytes, "a key block is four 64-byte groups");

// o[r][:] = o[r][:] · alpha[r] + Σ_j w[r][j] · x[j][:] for kRows rows of o (row stride ldo; alpha
// null: 1) and BK rows of x (row stride ldx), one feature vector wide; w is [kRows, BK]. The four
// accumulators are named so that they stay in registers.
template <typename T, typename FV, int64_t BK>
inline void rows_times_block(T* o, int64_t ldo, const T* alpha, const T* w, const T* x, int64_t ldx) {
  static_assert(kRows == 4, "written out for four rows");
  typename FV::type a0 = load<FV>(o), a1 = load<FV>(o + ldo), a2 = load<FV>(o + 2 * ldo), a3 = load<FV>(o + 3 * ldo);
  if (alpha != nullptr) a0 *= alpha[0], a1 *= alpha[1], a2 *= alpha[2], a3 *= alpha[3];
#pragma GCC unroll 4
  for (int64_t j = 0; j < BK; ++j) {
    const typename FV::type xj = load<FV>(x + j * ldx);
    a0 += w[j] * xj;
    a1 += w[BK + j] * xj;
    a2 += w[2 * BK + j] * xj;
    a3 += w[3 * BK + j] * xj;
  }
  store<FV>(o, a0);
  store<FV>(o + ldo, a1);
  store<FV>(o + 2 * ldo, a2);
  store<FV>(o + 3 * ldo, a3);
}

// One key block (NV vectors from kT's column j0) for `rows` queries of a forward unit: updates
// their running output o [rows, dvp], row max m and row sum l; p is scratch [kRows, NV·lanes].
template <typename T, int FB, int NV>
inline void forward_block(const T* q, int64_t dp, const T* kT, int64_t Mp, const T* v, int64_t dvp, int64_t d,
                          int64_t valid, T scale, int64_t rows, T* o, T* m, T* l, T* p) {
  using KV = KeyVec<T>;
  using FV = FeatVec<T, FB>;
  constexpr int64_t BK = NV * KV::lanes;
  const T inf = std::numeric_limits<T>::infinity();
  for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
    typename KV::type s[kRows][NV];
    block_scores<T, KV, NV>(s, q + r0 * dp, dp, kT, Mp, d, scale);
    T alpha[kRows];
    for (int r = 0; r < kRows; ++r) {
      if (valid < BK) mask_keys<KV, NV>(s[r], valid, -inf);
      typename KV::type mx = s[r][0];
      for (int jv = 1; jv < NV; ++jv) mx = s[r][jv] > mx ? s[r][jv] : mx;
      const T m_old = m[r0 + r], block_max = hmax<KV, T>(mx);
      const T m_new = block_max > m_old ? block_max : m_old;  // a NaN score: its exp below is NaN
      const T shift = m_new == -inf ? T(0) : m_new;          // no −inf − (−inf) while a row is all −inf
      // 1 also for a row still all −inf; 0 on a row's first finite block (o and l are still 0: no exp)
      alpha[r] = m_new == m_old ? T(1) : (m_old == -inf ? T(0) : std::exp(m_old - shift));
      typename KV::type sum = {};
      for (int jv = 0; jv < NV; ++jv) {
        const typename KV::type e = vexp<kVecBytes>(s[r][jv] - shift);
        sum += e;
        store<KV>(p + r * BK + jv * KV::lanes, e);
      }
      l[r0 + r] = l[r0 + r] * alpha[r] + hsum<KV, T>(sum);
      m[r0 + r] = m_new;
    }
    for (int64_t f0 = 0; f0 < dvp; f0 += FV::lanes)
      rows_times_block<T, FV, BK>(o + r0 * dvp + f0, dvp, alpha, p, v + f0, dvp);
  }
}

// Forward: one work unit is (batch b, kQueryBlock queries), which meet every key block in turn.
template <typename T, int FB>
void forward_kernel(const T* qp, const T* kT, const T* vp, T* out, T* lse, int64_t B, int64_t N, int64_t M,
                    int64_t Np, int64_t Mp, int64_t d, int64_t dp, int64_t dv, int64_t dvp, T scale) {
  constexpr int64_t BK = kKeyVecs * KeyVec<T>::lanes;
  const int64_t blocks = (Np + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, B * blocks, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> o(kQueryBlock * dvp), m(kQueryBlock), l(kQueryBlock), p(kRows * BK);
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / blocks, i0 = (u % blocks) * kQueryBlock, rows = std::min(kQueryBlock, Np - i0);
      const T* q = qp + (b * Np + i0) * dp;
      std::fill(o.begin(), o.end(), T(0));
      std::fill(m.begin(), m.end(), -std::numeric_limits<T>::infinity());
      std::fill(l.begin(), l.end(), T(0));
      for_key_blocks<T>(0, Mp, [&](int64_t j0, auto nv) {
        forward_block<T, FB, decltype(nv)::value>(q, dp, kT + b * d * Mp + j0, Mp, vp + (b * Mp + j0) * dvp, dvp, d,
                                                  M - j0, scale, rows, o.data(), m.data(), l.data(), p.data());
      });
      for (int64_t r = 0; r < rows && i0 + r < N; ++r) {
        T* y = out + (b * N + i0 + r) * dv;
        for (int64_t c = 0; c < dv; ++c) y[c] = o[r * dvp + c] / l[r];
        lse[b * N + i0 + r] = m[r] + std::log(l[r]);
      }
    }
  });
}

// acc[j][:] += Σ_r w[r][j] · x[r][:] for BK rows of acc and kRows rows of x (both of row stride ld):
// dv += pᵀ·grad and dk += dsᵀ·q.
template <typename T, typename FV, int64_t BK>
inline void accumulate_keys(T* acc, const T* w, const T* x, int64_t ld) {
  static_assert(kRows == 4, "written out for four rows");
  for (int64_t f0 = 0; f0 < ld; f0 += FV::lanes) {
    const typename FV::type x0 = load<FV>(x + f0), x1 = load<FV>(x + ld + f0);
    const typename FV::type x2 = load<FV>(x + 2 * ld + f0), x3 = load<FV>(x + 3 * ld + f0);
#pragma GCC unroll 4
    for (int64_t j = 0; j < BK; ++j) {
      typename FV::type a = load<FV>(acc + j * ld + f0);
      a += w[j] * x0;
      a += w[BK + j] * x1;
      a += w[2 * BK + j] * x2;
      a += w[3 * BK + j] * x3;
      store<FV>(acc + j * ld + f0, a);
    }
  }
}

// Pointers of one backward unit's batch (see backward_kernel) and its scratch.
template <typename T>
struct BwdBatch {
  const T *q, *g, *k, *kT, *vT, *lse, *delta;
  T *dq, *dkb, *dvb, *p, *ds;
};

// One key block (NV vectors from column j0) against every query row of the batch: dk, dv of the
// block into dkb, dvb, and the block's share of dq.
template <typename T, int FB, int NV>
inline void backward_block(const BwdBatch<T>& x, int64_t j0, int64_t N, int64_t Np, int64_t Mp, int64_t d,
                           int64_t dp, int64_t dv, int64_t dvp, int64_t valid, T scale) {
  using KV = KeyVec<T>;
  using FV = FeatVec<T, FB>;
  constexpr int64_t BK = NV * KV::lanes;
  for (int64_t r0 = 0; r0 < Np; r0 += kRows) {
    typename KV::type s[kRows][NV], dpr[kRows][NV];
    block_scores<T, KV, NV>(s, x.q + r0 * dp, dp, x.kT + j0, Mp, d, scale);
    block_scores<T, KV, NV>(dpr, x.g + r0 * dvp, dvp, x.vT + j0, Mp, dv, T(1));
    for (int r = 0; r < kRows; ++r) {
      const T lr = x.lse[r0 + r], dr = x.delta[r0 + r];
      for (int jv = 0; jv < NV; ++jv) {
        const typename KV::type e = vexp<kVecBytes>(s[r][jv] - lr);
        s[r][jv] = e;
        dpr[r][jv] = e * (dpr[r][jv] - dr);
      }
      if (r0 + r >= N) {  // padding rows: no contribution, whatever the keys hold
        mask_keys<KV, NV>(s[r], 0, T(0));
        mask_keys<KV, NV>(dpr[r], 0, T(0));
      } else if (valid < BK) {
        mask_keys<KV, NV>(s[r], valid, T(0));
        mask_keys<KV, NV>(dpr[r], valid, T(0));
      }
      for (int jv = 0; jv < NV; ++jv) {
        store<KV>(x.p + r * BK + jv * KV::lanes, s[r][jv]);
        store<KV>(x.ds + r * BK + jv * KV::lanes, dpr[r][jv]);
      }
    }
    accumulate_keys<T, FV, BK>(x.dvb, x.p, x.g + r0 * dvp, dvp);
    accumulate_keys<T, FV, BK>(x.dkb, x.ds, x.q + r0 * dp, dp);
    for (int64_t f0 = 0; f0 < dp; f0 += FV::lanes)
      rows_times_block<T, FV, BK>(x.dq + r0 * dp + f0, dp, nullptr, x.ds, x.k + j0 * dp + f0, dp);
  }
}

// Backward: one work unit is (batch b, chunk of chunk_keys keys); it owns dk and dv of its keys and
// the partial dq_part[chunk, b] (summed over chunks by the caller's reduction).
template <typename T, int FB>
void backward_kernel(const T* qp, const T* kp, const T* kT, const T* vT, const T* gp, const T* lse, const T* delta,
                     T* dq_part, T* dk, T* dv_out, int64_t B, int64_t N, int64_t M, int64_t Np, int64_t Mp, int64_t d,
                     int64_t dp, int64_t dv, int64_t dvp, int64_t chunk_keys, int64_t chunks, T scale) {
  constexpr int64_t BK = kKeyVecs * KeyVec<T>::lanes;
  at::parallel_for(0, B * chunks, 1, [&](int64_t u0, int64_t u1) {
    std::vector<T> dkb(BK * dp), dvb(BK * dvp), p(kRows * BK), ds(kRows * BK);
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / chunks, ch = u % chunks;
      const int64_t k0 = ch * chunk_keys, k1 = std::min(Mp, k0 + chunk_keys);
      BwdBatch<T> x{qp + b * Np * dp, gp + b * Np * dvp, kp + b * Mp * dp, kT + b * d * Mp, vT + b * dv * Mp,
                    lse + b * Np, delta + b * Np, dq_part + (ch * B + b) * Np * dp, dkb.data(), dvb.data(),
                    p.data(), ds.data()};
      std::fill(x.dq, x.dq + Np * dp, T(0));
      for_key_blocks<T>(k0, k1, [&](int64_t j0, auto nv) {
        std::fill(dkb.begin(), dkb.end(), T(0));
        std::fill(dvb.begin(), dvb.end(), T(0));
        backward_block<T, FB, decltype(nv)::value>(x, j0, N, Np, Mp, d, dp, dv, dvp, M - j0, scale);
        for (int64_t j = 0; j < BK && j0 + j < M; ++j) {
          T* dkr = dk + (b * M + j0 + j) * d;
          T* dvr = dv_out + (b * M + j0 + j) * dv;
          for (int64_t c = 0; c < d; ++c) dkr[c] = dkb[j * dp + c] * scale;
          for (int64_t c = 0; c < dv; ++c) dvr[c] = dvb[j * dvp + c];
        }
      });
    }
  });
}

}  // namespace SROPS_NL_ISA
// NOLINTEND
