// Kernel templates of cbam_cpu.cpp, included there once per instruction set inside
// `namespace SROPS_CBAM_ISA` (see there). Include nothing here: every header this code uses is
// included by cbam_cpu.cpp before, so that only these functions take the per-ISA target.
// NOLINTBEGIN
namespace SROPS_CBAM_ISA {

template <typename scalar_t>
using acc_t = at::opmath_type<scalar_t>;

// dc[b, ch] = sum over position tiles k of partial[b, k, ch], accumulated in double.
template <typename A, typename T>
void sum_tile_partials(const A* partial, T* dc, int64_t B, int64_t C, int64_t tiles) {
  at::parallel_for(0, B * C, 64, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / C, ch = i % C;
      double total = 0;
      for (int64_t k = 0; k < tiles; ++k) total += static_cast<double>(partial[(b * tiles + k) * C + ch]);
      dc[i] = static_cast<T>(total);
    }
  });
}

// Pass 1: per row r of x [B*C, N]: mean, max and the first index of the max.
template <typename T>
void channel_pool_kernel(const T* x, T* stats, int64_t* argmax, int64_t rows, int64_t N, bool avg, bool max) {
  using A = acc_t<T>;
  const int64_t P = int64_t(avg) + int64_t(max);
  at::parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = x + r * N;
      double total = 0;
      A best = -std::numeric_limits<A>::infinity();
      int64_t best_chunk = -1;
      bool unordered = false;  // a NaN (or inf - inf) in the sum: settle the max by a scalar scan
      for (int64_t s = 0; s < N; s += kChunk) {
        const int64_t e = std::min(N, s + kChunk);
        A part = 0;
        if (max) {
          A cmax = -std::numeric_limits<A>::infinity();
#pragma omp simd reduction(+ : part) reduction(max : cmax)
          for (int64_t m = s; m < e; ++m) {
            const A v = static_cast<A>(row[m]);
            part += v;
            cmax = v > cmax ? v : cmax;
          }
          if (best_chunk < 0 || cmax > best) best = cmax, best_chunk = s;
          if (std::isnan(part)) unordered = true;
        } else {
#pragma omp simd reduction(+ : part)
          for (int64_t m = s; m < e; ++m) part += static_cast<A>(row[m]);
        }
        total += static_cast<double>(part);
      }
      T* out = stats + r * P;
      if (avg) out[0] = static_cast<T>(total / static_cast<double>(N));
      if (!max) continue;
      int64_t idx = -1;
      if (unordered) {  // torch.max: NaN wins, first NaN; else the first maximal element
        for (int64_t m = 0; m < N && idx < 0; ++m)
          if (std::isnan(static_cast<A>(row[m]))) idx = m;
        if (idx < 0) {
          best = static_cast<A>(row[0]), idx = 0;
          for (int64_t m = 1; m < N; ++m)
            if (static_cast<A>(row[m]) > best) best = static_cast<A>(row[m]), idx = m;
        }
      } else {
        const int64_t e = std::min(N, best_chunk + kChunk);
        for (int64_t m = best_chunk; m < e && idx < 0; ++m)
          if (static_cast<A>(row[m]) == best) idx = m;
      }
      out[P - 1] = row[idx];
      argmax[r] = idx;
    }
  });
}

template <typename T>
void channel_pool_backward_kernel(const T* g, const int64_t* argmax, T* dx, int64_t rows, int64_t N, bool avg,
                                  bool max) {
  using A = acc_t<T>;
  const int64_t P = int64_t(avg) + int64_t(max);
  at::parallel_for(0, rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const A ga = avg ? static_cast<A>(g[r * P]) / static_cast<A>(N) : A(0);
      T* drow = dx + r * N;
      std::fill(drow, drow + N, static_cast<T>(ga));
      if (max) drow[argmax[r]] = static_cast<T>(ga + static_cast<A>(g[r * P + P - 1]));
    }
  });
}

// Pass 2: over the channels of y = x * c, per position of one tile of batch b. The running argmax is an
// integer I of the compute type's lane width (int32 for float, int64 for double) so the loop still
// if-converts into vector selects; I holds every channel index (the caller picks int64 when C > 2^31 - 1).
template <typename I, typename T>
void spatial_pool_kernel(const T* x, const T* c, T* pooled, int64_t* argmax, int64_t B, int64_t C, int64_t N) {
  using A = acc_t<T>;
  const int64_t tiles = (N + kTile - 1) / kTile;
  at::parallel_for(0, B * tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<A> buf(2 * kTile);
    std::vector<I> args(kTile);
    A *sum = buf.data(), *mx = sum + kTile;
    I* arg = args.data();
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / tiles, s = (t % tiles) * kTile, len = std::min(kTile, N - s);
      std::fill(sum, sum + len, A(0));
      std::fill(mx, mx + len, -std::numeric_limits<A>::infinity());
      std::fill(arg, arg + len, I(0));
      for (int64_t ch = 0; ch < C; ++ch) {
        const T* row = x + (b * C + ch) * N + s;
        const A cc = c ? static_cast<A>(c[b * C + ch]) : A(1);
        const I chi = static_cast<I>(ch);
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) {
          // y = x * c rounded to T as the reference's y (a no-op for float/double): same ties.
          const A v = static_cast<A>(static_cast<T>(static_cast<A>(row[j]) * cc));
          const A m = mx[j];
          sum[j] += v;
          // Bitwise, not short-circuit, so the loop if-converts: NaN propagates, the first NaN is kept.
          const bool take = (v > m) | ((v != v) & (m == m));
          mx[j] = take ? v : m;
          arg[j] = take ? chi : arg[j];
        }
      }
      T* pmax = pooled + b * 2 * N + s;
      T* pmean = pmax + N;
      int64_t* am = argmax + b * N + s;
      for (int64_t j = 0; j < len; ++j) {
        pmax[j] = static_cast<T>(mx[j]);
        pmean[j] = static_cast<T>(sum[j] / static_cast<A>(C));
        am[j] = static_cast<int64_t>(arg[j]);
      }
    }
  });
}

// dy = g_mean / C + [ch == argmax] g_max;  dx = dy * c (unless dx is null);  dc[b, ch] = sum_hw dy * x.
// The channel loop handles the dense g_mean term (plain vectorised loops); the g_max term touches one
// channel per position and is added afterwards by position (a gather from x, a scatter into dx).
template <typename T>
void spatial_pool_backward_kernel(const T* g, const T* x, const T* c, const int64_t* argmax, T* dx, T* dc, int64_t B,
                                  int64_t C, int64_t N) {
  using A = acc_t<T>;
  const int64_t tiles = (N + kTile - 1) / kTile;
  std::vector<A> partial(c ? B * tiles * C : 0);
  at::parallel_for(0, B * tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<A> gmean(kTile);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / tiles, s = (t % tiles) * kTile, len = std::min(kTile, N - s);
      const T* gmax = g + b * 2 * N + s;
      const int64_t* arg = argmax + b * N + s;
      for (int64_t j = 0; j < len; ++j) gmean[j] = static_cast<A>(g[b * 2 * N + N + s + j]) / static_cast<A>(C);
      A* part = c ? partial.data() + t * C : nullptr;
      for (int64_t ch = 0; ch < C; ++ch) {
        const int64_t off = (b * C + ch) * N + s;
        const A cc = c ? static_cast<A>(c[b * C + ch]) : A(1);
        if (dx) {
          T* drow = dx + off;
#pragma omp simd
          for (int64_t j = 0; j < len; ++j) drow[j] = static_cast<T>(gmean[j] * cc);
        }
        if (part) {
          const T* row = x + off;
          A sum = 0;
#pragma omp simd reduction(+ : sum)
          for (int64_t j = 0; j < len; ++j) sum += gmean[j] * static_cast<A>(row[j]);
          part[ch] = sum;
        }
      }
      for (int64_t j = 0; j < len; ++j) {  // the max term, at the argmax channel of each position
        const int64_t ch = arg[j], off = (b * C + ch) * N + s + j;
        const A gm = static_cast<A>(gmax[j]);
        if (dx) dx[off] = static_cast<T>((gmean[j] + gm) * (c ? static_cast<A>(c[b * C + ch]) : A(1)));
        if (part) part[ch] += gm * static_cast<A>(x[off]);
      }
    }
  });
  if (c) sum_tile_partials(partial.data(), dc, B, C, tiles);
}

// Pass 3: out = x * c * s, row by row.
template <typename T>
void apply_kernel(const T* x, const T* c, const T* s, T* out, int64_t B, int64_t C, int64_t N) {
  using A = acc_t<T>;
  at::parallel_for(0, B * C, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = x + r * N;
      T* orow = out + r * N;
      const A cc = c ? static_cast<A>(c[r]) : A(1);
      if (s) {
        const T* srow = s + (r / C) * N;
#pragma omp simd
        for (int64_t m = 0; m < N; ++m)  // (x * c rounded to T) * s, the reference's roundings
          orow[m] = static_cast<T>(static_cast<A>(static_cast<T>(static_cast<A>(row[m]) * cc)) * static_cast<A>(srow[m]));
      } else {
#pragma omp simd
        for (int64_t m = 0; m < N; ++m) orow[m] = static_cast<T>(static_cast<A>(row[m]) * cc);
      }
    }
  });
}

// dx = g * s * c (unless dx is null);  dc[b, ch] = sum_hw g * s * x;  ds[b, hw] = sum_ch g * x * c.
template <typename T>
void apply_backward_kernel(const T* g, const T* x, const T* c, const T* s, T* dx, T* dc, T* ds, int64_t B, int64_t C,
                           int64_t N) {
  using A = acc_t<T>;
  const int64_t tiles = (N + kTile - 1) / kTile;
  std::vector<A> partial(c ? B * tiles * C : 0);
  at::parallel_for(0, B * tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<A> buf(2 * kTile);
    A *sv = buf.data(), *dsum = sv + kTile;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / tiles, st = (t % tiles) * kTile, len = std::min(kTile, N - st);
      for (int64_t j = 0; j < len; ++j) sv[j] = s ? static_cast<A>(s[b * N + st + j]) : A(1);
      std::fill(dsum, dsum + len, A(0));
      for (int64_t ch = 0; ch < C; ++ch) {
        const int64_t off = (b * C + ch) * N + st;
        const T* grow = g + off;
        const T* row = x + off;
        const A cc = c ? static_cast<A>(c[b * C + ch]) : A(1);
        A part = 0;
        if (dx) {
          T* drow = dx + off;
#pragma omp simd reduction(+ : part)
          for (int64_t j = 0; j < len; ++j) {
            const A gv = static_cast<A>(grow[j]), xv = static_cast<A>(row[j]);
            const A gs = gv * sv[j];
            drow[j] = static_cast<T>(gs * cc);
            part += gs * xv;
            dsum[j] += gv * (xv * cc);
          }
        } else {
#pragma omp simd reduction(+ : part)
          for (int64_t j = 0; j < len; ++j) {
            const A gv = static_cast<A>(grow[j]), xv = static_cast<A>(row[j]);
            part += gv * sv[j] * xv;
            dsum[j] += gv * (xv * cc);
          }
        }
        if (c) partial[t * C + ch] = part;
      }
      if (s)
        for (int64_t j = 0; j < len; ++j) ds[b * N + st + j] = static_cast<T>(dsum[j]);
    }
  });
  if (c) sum_tile_partials(partial.data(), dc, B, C, tiles);
}

// The whole input gradient in one pass, for the fused backward (cbam_input_bwd):
//   dx = c * (g * s + g_mean / C + [ch == spatial_argmax] g_max) + g_avg / N + [hw == channel_argmax] g_cmax
// with c, s = 1 where absent and the pooled-gradient terms 0 where their gradient is absent. The
// channel loop writes the dense terms; the elements at an argmax are then rewritten with their max
// terms (one per position, one per channel row).
template <typename T>
void input_backward_kernel(const T* g, const T* c, const T* s, const T* gp, const int64_t* sarg, const T* gst,
                           const int64_t* carg, T* dx, int64_t B, int64_t C, int64_t N, bool avg, bool max) {
  using A = acc_t<T>;
  const int64_t P = int64_t(avg) + int64_t(max);
  const bool cmax = gst && max;
  const int64_t tiles = (N + kTile - 1) / kTile;
  at::parallel_for(0, B * tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<A> buf(2 * kTile);
    A *sv = buf.data(), *gmean = sv + kTile;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / tiles, st = (t % tiles) * kTile, len = std::min(kTile, N - st);
      for (int64_t j = 0; j < len; ++j) {
        sv[j] = s ? static_cast<A>(s[b * N + st + j]) : A(1);
        gmean[j] = gp ? static_cast<A>(gp[b * 2 * N + N + st + j]) / static_cast<A>(C) : A(0);
      }
      // dx at (channel ch, tile position j) with the max terms that apply there.
      auto element = [&](int64_t ch, int64_t j) {
        const int64_t r = b * C + ch;
        A dy = static_cast<A>(g[r * N + st + j]) * sv[j] + gmean[j];
        if (gp && sarg[b * N + st + j] == ch) dy += static_cast<A>(gp[b * 2 * N + st + j]);
        A v = dy * (c ? static_cast<A>(c[r]) : A(1));
        if (gst && avg) v += static_cast<A>(gst[r * P]) / static_cast<A>(N);
        if (cmax && carg[r] == st + j) v += static_cast<A>(gst[r * P + P - 1]);
        return static_cast<T>(v);
      };
      for (int64_t ch = 0; ch < C; ++ch) {
        const int64_t r = b * C + ch, off = r * N + st;
        const T* grow = g + off;
        T* drow = dx + off;
        const A cc = c ? static_cast<A>(c[r]) : A(1);
        const A ga = gst && avg ? static_cast<A>(gst[r * P]) / static_cast<A>(N) : A(0);
#pragma omp simd
        for (int64_t j = 0; j < len; ++j) drow[j] = static_cast<T>((static_cast<A>(grow[j]) * sv[j] + gmean[j]) * cc + ga);
        if (cmax && carg[r] >= st && carg[r] < st + len) drow[carg[r] - st] = element(ch, carg[r] - st);
      }
      if (gp)
        for (int64_t j = 0; j < len; ++j) {
          const int64_t ch = sarg[b * N + st + j];
          dx[(b * C + ch) * N + st + j] = element(ch, j);
        }
    }
  });
}

}  // namespace SROPS_CBAM_ISA
// NOLINTEND
