// Kernels of fused CBAM (see cbam.h) on raw pointers; launchers in cbam_cuda.cu, launch configuration in
// cbam_launch.h, registrations in cbam_cuda_register.cpp. T is the tensor type, A the accumulation type
// (float32 for float16/bfloat16/float32, float64 for float64). All index arithmetic in int64. Reductions
// over H*W use one block per (b, c) row (the forward channel pooling splits rows when B*C is small);
// reductions over C use one thread per (b, position) walking the channels, so loads stay coalesced
// along H*W. Deterministic: no atomics. Argmax indices are only ever compared with positions, so an
// index out of range drops its gradient term and never reads or writes outside a tensor.
#pragma once

#include <cstdint>

#include "cbam/cbam_launch.h"
#include "common/cuda_compat.h"

namespace srops {
namespace cbam_kernels {

// Positions per thread of the vectorised kernels: V = kCbamVecBytes / sizeof(T) consecutive elements moved
// as one 16-byte access (LDG.128 / STG.128) where kAligned, else 1 (cbam_vector_plan's width).
template <typename T, bool kAligned>
constexpr int vec_width() {
  return kAligned && kCbamVecBytes / static_cast<int>(sizeof(T)) > 1 ? kCbamVecBytes / static_cast<int>(sizeof(T)) : 1;
}
template <typename T, bool kAligned>
struct alignas(kAligned ? kCbamVecBytes : alignof(T)) Pack {
  T v[vec_width<T, kAligned>()];
};
// Every pack lies inside its row: V divides N where kAligned, and V = 1 otherwise.
template <typename T, bool kAligned>
SROPS_DEVICE Pack<T, kAligned> load_pack(const T* __restrict__ p) {
  return *reinterpret_cast<const Pack<T, kAligned>*>(p);
}
template <typename T, bool kAligned>
SROPS_DEVICE void store_pack(T* __restrict__ p, const Pack<T, kAligned>& r) {
  *reinterpret_cast<Pack<T, kAligned>*>(p) = r;
}

// (v, i) ranks before (m, mi) in torch.max's order: NaN first, then larger, then the lower index.
template <typename A>
SROPS_DEVICE bool ranks_before(A v, int64_t i, A m, int64_t mi) {
  const bool vn = v != v, mn = m != m;
  if (vn || mn) return vn && (!mn || i < mi);
  return v > m || (v == m && i < mi);
}

// Per-channel sum, max and first argmax over H*W. Block (r, k) reduces part k of row r (gridDim.y parts
// of ceil(N / parts) elements): with one part it writes stats/argmax directly; with several it writes
// the part's (sum, max, index) to the workspace and channel_pool_combine_kernel finishes the row, so
// that small batches still fill the device. Deterministic (fixed reduction order).
template <typename T, typename A>
SROPS_GLOBAL void channel_pool_kernel(const T* __restrict__ x, T* __restrict__ stats, int64_t* __restrict__ argmax,
                                    A* __restrict__ part_sum, A* __restrict__ part_max,
                                    int64_t* __restrict__ part_idx, int64_t N, bool avg, bool max) {
  SROPS_SHARED A s_sum[kCbamThreads];
  SROPS_SHARED A s_max[kCbamThreads];
  SROPS_SHARED int64_t s_idx[kCbamThreads];
  const int64_t r = blockIdx.x, parts = gridDim.y, k = blockIdx.y;
  const int64_t len = (N + parts - 1) / parts, begin = k * len, end = begin + len < N ? begin + len : N;
  const T* row = x + r * N;
  A sum = 0, best = 0;
  int64_t idx = -1;
  for (int64_t m = begin + threadIdx.x; m < end; m += blockDim.x) {
    const A v = static_cast<A>(row[m]);
    sum += v;
    if (idx < 0 || ranks_before(v, m, best, idx)) best = v, idx = m;
  }
  s_sum[threadIdx.x] = sum, s_max[threadIdx.x] = best, s_idx[threadIdx.x] = idx;
  __syncthreads();
  for (int step = blockDim.x / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) {
      const int o = threadIdx.x + step;
      s_sum[threadIdx.x] += s_sum[o];
      const int t = threadIdx.x;
      if (s_idx[o] >= 0 && (s_idx[t] < 0 || ranks_before(s_max[o], s_idx[o], s_max[t], s_idx[t])))
        s_max[threadIdx.x] = s_max[o], s_idx[threadIdx.x] = s_idx[o];
    }
    __syncthreads();
  }
  if (threadIdx.x != 0) return;
  if (parts > 1) {
    part_sum[r * parts + k] = s_sum[0], part_max[r * parts + k] = s_max[0], part_idx[r * parts + k] = s_idx[0];
    return;
  }
  const int64_t P = int64_t(avg) + int64_t(max);
  if (avg) stats[r * P] = static_cast<T>(s_sum[0] / static_cast<A>(N));
  if (max) {
    stats[r * P + P - 1] = row[s_idx[0]];
    argmax[r] = s_idx[0];
  }
}

// Row r's parts in order: the sum, and the first maximal element (an empty part has index -1).
template <typename T, typename A>
SROPS_GLOBAL void channel_pool_combine_kernel(const T* __restrict__ x, const A* __restrict__ part_sum,
                                            const A* __restrict__ part_max,
                                            const int64_t* __restrict__ part_idx, T* __restrict__ stats,
                                            int64_t* __restrict__ argmax, int64_t rows, int64_t parts, int64_t N,
                                            bool avg, bool max) {
  const int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (r >= rows) return;
  A sum = 0, best = 0;
  int64_t idx = -1;
  for (int64_t k = 0; k < parts; ++k) {
    const int64_t i = r * parts + k;
    sum += part_sum[i];
    if (part_idx[i] >= 0 && (idx < 0 || ranks_before(part_max[i], part_idx[i], best, idx)))
      best = part_max[i], idx = part_idx[i];
  }
  const int64_t P = int64_t(avg) + int64_t(max);
  if (avg) stats[r * P] = static_cast<T>(sum / static_cast<A>(N));
  if (max) {
    stats[r * P + P - 1] = x[r * N + idx];
    argmax[r] = idx;
  }
}

// dx[r, n] = g_avg / N + [n == argmax[r]] g_max; grid: position_grid(B*C, N).
template <typename T, typename A>
SROPS_GLOBAL void channel_pool_backward_kernel(const T* __restrict__ g, const int64_t* __restrict__ argmax,
                                             T* __restrict__ dx, int64_t rows, int64_t N, bool avg, bool max) {
  const int64_t P = int64_t(avg) + int64_t(max);
  SROPS_FOR_ROWS(r, rows) {
    const A mean = avg ? static_cast<A>(g[r * P]) / static_cast<A>(N) : A(0);
    const A gmax = max ? static_cast<A>(g[r * P + P - 1]) : A(0);
    const int64_t am = max ? argmax[r] : -1;
    T* out = dx + r * N;
    SROPS_FOR_POSITIONS(n, N) out[n] = static_cast<T>(n == am ? mean + gmax : mean);
  }
}

// In a walk over increasing indices, v at a later index ranks before the best so far m (ranks_before with
// i > mi): a NaN where m is not NaN, or a larger value; never after m is NaN, never on a tie.
template <typename A>
SROPS_DEVICE bool later_ranks_before(A v, A m) {
  return m == m && !(v <= m);
}

// Channel max (first maximal channel) and mean of y = x * c per (b, position), V positions per thread
// (vec_width: 16 bytes, or 1); grid: position_grid(B, N / V), kAligned as cbam_vector_plan decides.
template <typename T, typename A, bool kAligned>
SROPS_GLOBAL void spatial_pool_kernel(const T* __restrict__ x, const T* __restrict__ c, T* __restrict__ pooled,
                                    int64_t* __restrict__ argmax, int64_t B, int64_t C, int64_t N) {
  constexpr int V = vec_width<T, kAligned>();
  const int64_t groups = N / V;  // V divides N (cbam_vector_plan)
  SROPS_FOR_ROWS(b, B) {
    const T* xb = x + b * C * N;
    const T* cb = c ? c + b * C : nullptr;
    SROPS_FOR_POSITIONS(q, groups) {
      const int64_t n0 = q * V;
      A sum[V], best[V];
      int64_t idx[V];
      const T* xp = xb + n0;
      // y = x * c rounded to T as the reference's y (a no-op for float/double): same ties.
      auto y = [&](const Pack<T, kAligned>& xv, int k, A cc) {
        return static_cast<A>(static_cast<T>(static_cast<A>(xv.v[k]) * cc));
      };
      {  // channel 0 (C >= 1: the launcher rejects empty inputs)
        const A cc = cb ? static_cast<A>(cb[0]) : A(1);
        const Pack<T, kAligned> xv = load_pack<T, kAligned>(xp);
#pragma unroll
        for (int k = 0; k < V; ++k) best[k] = y(xv, k, cc), sum[k] = A(0) + best[k], idx[k] = 0;  // 0 + (-0) = +0
      }
      for (int64_t ch = 1; ch < C; ++ch) {
        xp += N;
        const A cc = cb ? static_cast<A>(cb[ch]) : A(1);
        const Pack<T, kAligned> xv = load_pack<T, kAligned>(xp);
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const A v = y(xv, k, cc);
          sum[k] += v;
          if (later_ranks_before(v, best[k])) best[k] = v, idx[k] = ch;
        }
      }
      Pack<T, kAligned> mx, mean;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        mx.v[k] = static_cast<T>(best[k]);
        mean.v[k] = static_cast<T>(sum[k] / static_cast<A>(C));
        argmax[b * N + n0 + k] = idx[k];
      }
      store_pack<T, kAligned>(pooled + b * 2 * N + n0, mx);
      store_pack<T, kAligned>(pooled + b * 2 * N + N + n0, mean);
    }
  }
}

// dx = (g_mean / C + [ch == argmax] g_max) * c, one thread per (b, position); grid: position_grid(B, N).
template <typename T, typename A>
SROPS_GLOBAL void spatial_pool_backward_dx_kernel(const T* __restrict__ g, const T* __restrict__ c,
                                                const int64_t* __restrict__ argmax, T* __restrict__ dx, int64_t B,
                                                int64_t C, int64_t N) {
  SROPS_FOR_ROWS(b, B) {
    const T* cb = c ? c + b * C : nullptr;
    SROPS_FOR_POSITIONS(n, N) {
      const int64_t am = argmax[b * N + n];
      const A gmax = static_cast<A>(g[b * 2 * N + n]);
      const A gmean = static_cast<A>(g[b * 2 * N + N + n]) / static_cast<A>(C);
      T* out = dx + b * C * N + n;
      for (int64_t ch = 0; ch < C; ++ch, out += N) {
        const A dy = gmean + (ch == am ? gmax : A(0));
        *out = static_cast<T>(dy * (cb ? static_cast<A>(cb[ch]) : A(1)));
      }
    }
  }
}

template <typename A>
SROPS_DEVICE A block_sum(A v, A* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int step = blockDim.x / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) shared[threadIdx.x] += shared[threadIdx.x + step];
    __syncthreads();
  }
  return shared[0];
}

// dc[b, ch] = sum_n (g_mean / C + [ch == argmax] g_max) * x, one block per (b, ch).
template <typename T, typename A>
SROPS_GLOBAL void spatial_pool_backward_dc_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                                const int64_t* __restrict__ argmax, T* __restrict__ dc, int64_t C,
                                                int64_t N) {
  SROPS_SHARED A shared[kCbamThreads];
  const int64_t r = blockIdx.x, b = r / C, ch = r % C;
  A part = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const A dy = static_cast<A>(g[b * 2 * N + N + n]) / static_cast<A>(C) +
                 (argmax[b * N + n] == ch ? static_cast<A>(g[b * 2 * N + n]) : A(0));
    part += dy * static_cast<A>(x[r * N + n]);
  }
  const A total = block_sum(part, shared);
  if (threadIdx.x == 0) dc[r] = static_cast<T>(total);
}

// out = x * c * s (absent gates are 1), V positions per thread (vec_width: 16 bytes, or 1); grid:
// position_grid(B*C, N / V), kAligned as cbam_vector_plan decides.
template <typename T, typename A, bool kAligned>
SROPS_GLOBAL void apply_kernel(const T* __restrict__ x, const T* __restrict__ c, const T* __restrict__ s,
                             T* __restrict__ out, int64_t rows, int64_t C, int64_t N) {
  constexpr int V = vec_width<T, kAligned>();
  const int64_t groups = N / V;  // V divides N (cbam_vector_plan)
  SROPS_FOR_ROWS(r, rows) {
    const T* xr = x + r * N;
    T* outr = out + r * N;
    const T* sb = s ? s + (r / C) * N : nullptr;
    const A cr = c ? static_cast<A>(c[r]) : A(1);
    SROPS_FOR_POSITIONS(q, groups) {
      const int64_t n0 = q * V;
      const Pack<T, kAligned> xv = load_pack<T, kAligned>(xr + n0);
      Pack<T, kAligned> sv, o;
      if (sb) sv = load_pack<T, kAligned>(sb + n0);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A v = static_cast<A>(xv.v[k]);
        if (c) v = static_cast<A>(static_cast<T>(v * cr));  // rounded like the reference's x * c
        if (sb) v *= static_cast<A>(sv.v[k]);
        o.v[k] = static_cast<T>(v);
      }
      store_pack<T, kAligned>(outr + n0, o);
    }
  }
}

// dx = g * s * c (unless dx is null) and ds[b, n] = sum_ch g * x * c (unless ds is null), V positions per
// thread (vec_width: 16 bytes, or 1); grid: position_grid(B, N / V), kAligned as cbam_vector_plan decides.
template <typename T, typename A, bool kAligned>
SROPS_GLOBAL void apply_backward_dx_kernel(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ c,
                                         const T* __restrict__ s, T* __restrict__ dx, T* __restrict__ ds, int64_t B,
                                         int64_t C, int64_t N) {
  constexpr int V = vec_width<T, kAligned>();
  const int64_t groups = N / V;  // V divides N (cbam_vector_plan)
  SROPS_FOR_ROWS(b, B) {
    const T* cb = c ? c + b * C : nullptr;
    SROPS_FOR_POSITIONS(q, groups) {
      const int64_t n0 = q * V, i0 = b * N + n0;
      A sv[V], dsum[V];
      Pack<T, kAligned> sp;
      if (s) sp = load_pack<T, kAligned>(s + i0);
#pragma unroll
      for (int k = 0; k < V; ++k) sv[k] = s ? static_cast<A>(sp.v[k]) : A(1), dsum[k] = 0;
      for (int64_t ch = 0, off = b * C * N + n0; ch < C; ++ch, off += N) {
        const A cc = cb ? static_cast<A>(cb[ch]) : A(1);
        const Pack<T, kAligned> gv = load_pack<T, kAligned>(g + off);
        if (dx) {
          Pack<T, kAligned> o;
#pragma unroll
          for (int k = 0; k < V; ++k) o.v[k] = static_cast<T>(static_cast<A>(gv.v[k]) * sv[k] * cc);
          store_pack<T, kAligned>(dx + off, o);
        }
        if (ds) {
          const Pack<T, kAligned> xv = load_pack<T, kAligned>(x + off);
#pragma unroll
          for (int k = 0; k < V; ++k) dsum[k] += static_cast<A>(gv.v[k]) * (static_cast<A>(xv.v[k]) * cc);
        }
      }
      if (ds) {
        Pack<T, kAligned> o;
#pragma unroll
        for (int k = 0; k < V; ++k) o.v[k] = static_cast<T>(dsum[k]);
        store_pack<T, kAligned>(ds + i0, o);
      }
    }
  }
}

// dc[b, ch] = sum_n g * s * x, one block per (b, ch).
template <typename T, typename A>
SROPS_GLOBAL void apply_backward_dc_kernel(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ s,
                                         T* __restrict__ dc, int64_t C, int64_t N) {
  SROPS_SHARED A shared[kCbamThreads];
  const int64_t r = blockIdx.x, b = r / C;
  A part = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const A gs = static_cast<A>(g[r * N + n]) * (s ? static_cast<A>(s[b * N + n]) : A(1));
    part += gs * static_cast<A>(x[r * N + n]);
  }
  const A total = block_sum(part, shared);
  if (threadIdx.x == 0) dc[r] = static_cast<T>(total);
}

// The whole input gradient of the fused backward (see cbam.h), one thread per V consecutive positions of
// one b (vec_width: 16 bytes, or 1) walking the channels. Every thread of a block has the same b, so the
// channels' terms (gate, pooled gradient / N, max gradient, argmax) are staged in shared memory
// kCbamThreads channels at a time, each computed once per block, and read by all; g and dx move as one
// 16-byte access where kAligned.
// The block walks its positions in step (its threads past the end idle), so that it can meet at barriers.
// Absent gates are 1, absent pooled gradients 0. grid: position_grid(B, N / V), kAligned as
// cbam_vector_plan decides.
template <typename T, typename A, bool kAligned>
SROPS_GLOBAL void input_backward_kernel(const T* __restrict__ g, const T* __restrict__ c, const T* __restrict__ s,
                                      const T* __restrict__ gp, const int64_t* __restrict__ sarg,
                                      const T* __restrict__ gst, const int64_t* __restrict__ carg, T* __restrict__ dx,
                                      int64_t B, int64_t C, int64_t N, bool avg, bool max) {
  constexpr int V = vec_width<T, kAligned>();
  SROPS_SHARED A s_gate[kCbamThreads];
  SROPS_SHARED A s_avg[kCbamThreads];
  SROPS_SHARED A s_max[kCbamThreads];
  SROPS_SHARED int64_t s_arg[kCbamThreads];
  const int64_t P = int64_t(avg) + int64_t(max), groups = N / V;  // V divides N
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  SROPS_FOR_ROWS(b, B) {
    for (int64_t base = int64_t(blockIdx.x) * blockDim.x; base < groups; base += step) {
      const int64_t q = base + threadIdx.x;
      const bool active = q < groups;
      const int64_t n0 = q * V, i0 = b * N + n0;
      A sv[V], gmax[V], gmean[V];
      int64_t am[V];
#pragma unroll
      for (int k = 0; k < V; ++k) {
        sv[k] = s && active ? static_cast<A>(s[i0 + k]) : A(1);
        gmax[k] = gp && active ? static_cast<A>(gp[b * 2 * N + n0 + k]) : A(0);
        gmean[k] = gp && active ? static_cast<A>(gp[b * 2 * N + N + n0 + k]) / static_cast<A>(C) : A(0);
        am[k] = gp && active ? sarg[i0 + k] : -1;
      }
      for (int64_t ch0 = 0; ch0 < C; ch0 += kCbamThreads) {
        const int64_t len = C - ch0 < kCbamThreads ? C - ch0 : kCbamThreads;
        __syncthreads();  // the previous chunk is read by every thread
        for (int64_t t = threadIdx.x; t < len; t += blockDim.x) {
          const int64_t r = b * C + ch0 + t;
          s_gate[t] = c ? static_cast<A>(c[r]) : A(1);
          s_avg[t] = gst && avg ? static_cast<A>(gst[r * P]) / static_cast<A>(N) : A(0);
          s_max[t] = gst && max ? static_cast<A>(gst[r * P + P - 1]) : A(0);
          s_arg[t] = gst && max ? carg[r] : int64_t(-1);
        }
        __syncthreads();
        if (!active) continue;
        for (int64_t j = 0, ch = ch0, off = (b * C + ch0) * N + n0; j < len; ++j, ++ch, off += N) {
          // No branch on absent terms: they are staged as 1 (gate) and 0 (pooled gradients, argmax -1).
          const A cc = s_gate[j], tavg = s_avg[j], tmax = s_max[j];
          const int64_t cm = s_arg[j] - n0;  // the channel's argmax as an offset into the V positions
          const bool hit = cm >= 0 && cm < V;
          const int k_hit = hit ? static_cast<int>(cm) : -1;
          const Pack<T, kAligned> gv = load_pack<T, kAligned>(g + off);
          Pack<T, kAligned> o;
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const A v = static_cast<A>(gv.v[k]) * sv[k] + gmean[k] + (ch == am[k] ? gmax[k] : A(0));
            o.v[k] = static_cast<T>(v * cc + tavg + (k == k_hit ? tmax : A(0)));
          }
          store_pack<T, kAligned>(dx + off, o);
        }
      }
    }
  }
}

}  // namespace cbam_kernels
}  // namespace srops
