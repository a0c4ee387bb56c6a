// CUDA kernels of fused CBAM (see cbam.h). All index arithmetic in int64; accumulation in
// at::opmath_type (float32 for float16/bfloat16/float32, float64 for float64). Reductions over H*W
// use one block per (b, c) row (the forward channel pooling splits rows when B*C is small);
// reductions over C use one thread per (b, position) walking the
// channels, so loads stay coalesced along H*W. Deterministic: no atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "cbam/cbam.h"

namespace srops {
namespace {

constexpr int kThreads = 256;  // a power of two (tree reductions below)

// Grid-stride kernels: enough blocks to fill the device, capped.
unsigned blocks_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 20)));
}

// One block per (b, c) row.
unsigned row_blocks(const char* op, int64_t rows) {
  TORCH_CHECK_VALUE(rows <= int64_t(INT32_MAX), "srops::", op, ": B*C must be at most 2^31 - 1, got ", rows);
  return static_cast<unsigned>(rows);
}

// (v, i) ranks before (m, mi) in torch.max's order: NaN first, then larger, then the lower index.
template <typename A>
__device__ __forceinline__ bool ranks_before(A v, int64_t i, A m, int64_t mi) {
  const bool vn = v != v, mn = m != m;
  if (vn || mn) return vn && (!mn || i < mi);
  return v > m || (v == m && i < mi);
}

// Per-channel sum, max and first argmax over H*W. Block (r, k) reduces part k of row r (gridDim.y parts
// of ceil(N / parts) elements): with one part it writes stats/argmax directly; with several it writes
// the part's (sum, max, index) to the workspace and channel_pool_combine_kernel finishes the row, so
// that small batches still fill the device. Deterministic (fixed reduction order).
template <typename T>
__global__ void channel_pool_kernel(const T* __restrict__ x, T* __restrict__ stats, int64_t* __restrict__ argmax,
                                    at::opmath_type<T>* __restrict__ part_sum, at::opmath_type<T>* __restrict__ part_max,
                                    int64_t* __restrict__ part_idx, int64_t N, bool avg, bool max) {
  using A = at::opmath_type<T>;
  __shared__ A s_sum[kThreads];
  __shared__ A s_max[kThreads];
  __shared__ int64_t s_idx[kThreads];
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
      if (s_idx[o] >= 0 && (s_idx[threadIdx.x] < 0 || ranks_before(s_max[o], s_idx[o], s_max[threadIdx.x], s_idx[threadIdx.x])))
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
template <typename T>
__global__ void channel_pool_combine_kernel(const T* __restrict__ x, const at::opmath_type<T>* __restrict__ part_sum,
                                            const at::opmath_type<T>* __restrict__ part_max,
                                            const int64_t* __restrict__ part_idx, T* __restrict__ stats,
                                            int64_t* __restrict__ argmax, int64_t rows, int64_t parts, int64_t N,
                                            bool avg, bool max) {
  using A = at::opmath_type<T>;
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

template <typename T>
__global__ void channel_pool_backward_kernel(const T* __restrict__ g, const int64_t* __restrict__ argmax,
                                             T* __restrict__ dx, int64_t total, int64_t N, bool avg, bool max) {
  using A = at::opmath_type<T>;
  const int64_t P = int64_t(avg) + int64_t(max);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, m = i % N;
    A v = avg ? static_cast<A>(g[r * P]) / static_cast<A>(N) : A(0);
    if (max && argmax[r] == m) v += static_cast<A>(g[r * P + P - 1]);
    dx[i] = static_cast<T>(v);
  }
}

template <typename T>
__global__ void spatial_pool_kernel(const T* __restrict__ x, const T* __restrict__ c, T* __restrict__ pooled,
                                    int64_t* __restrict__ argmax, int64_t B, int64_t C, int64_t N) {
  using A = at::opmath_type<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < B * N; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / N, n = i % N;
    A sum = 0, best = 0;
    int64_t idx = -1;
    for (int64_t ch = 0; ch < C; ++ch) {
      // y = x * c rounded to T as the reference's y (a no-op for float/double): same ties.
      const A v = static_cast<A>(
          static_cast<T>(static_cast<A>(x[(b * C + ch) * N + n]) * (c ? static_cast<A>(c[b * C + ch]) : A(1))));
      sum += v;
      if (idx < 0 || ranks_before(v, ch, best, idx)) best = v, idx = ch;
    }
    pooled[b * 2 * N + n] = static_cast<T>(best);
    pooled[b * 2 * N + N + n] = static_cast<T>(sum / static_cast<A>(C));
    argmax[i] = idx;
  }
}

// dx = (g_mean / C + [ch == argmax] g_max) * c, one thread per (b, position).
template <typename T>
__global__ void spatial_pool_backward_dx_kernel(const T* __restrict__ g, const T* __restrict__ c,
                                                const int64_t* __restrict__ argmax, T* __restrict__ dx, int64_t B,
                                                int64_t C, int64_t N) {
  using A = at::opmath_type<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < B * N; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / N, n = i % N, am = argmax[i];
    const A gmax = static_cast<A>(g[b * 2 * N + n]);
    const A gmean = static_cast<A>(g[b * 2 * N + N + n]) / static_cast<A>(C);
    for (int64_t ch = 0; ch < C; ++ch) {
      const A dy = gmean + (ch == am ? gmax : A(0));
      dx[(b * C + ch) * N + n] = static_cast<T>(dy * (c ? static_cast<A>(c[b * C + ch]) : A(1)));
    }
  }
}

template <typename A>
__device__ A block_sum(A v, A* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int step = blockDim.x / 2; step > 0; step /= 2) {
    if (threadIdx.x < step) shared[threadIdx.x] += shared[threadIdx.x + step];
    __syncthreads();
  }
  return shared[0];
}

// dc[b, ch] = sum_n (g_mean / C + [ch == argmax] g_max) * x, one block per (b, ch).
template <typename T>
__global__ void spatial_pool_backward_dc_kernel(const T* __restrict__ g, const T* __restrict__ x,
                                                const int64_t* __restrict__ argmax, T* __restrict__ dc, int64_t C,
                                                int64_t N) {
  using A = at::opmath_type<T>;
  __shared__ A shared[kThreads];
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

template <typename T>
__global__ void apply_kernel(const T* __restrict__ x, const T* __restrict__ c, const T* __restrict__ s,
                             T* __restrict__ out, int64_t total, int64_t C, int64_t N) {
  using A = at::opmath_type<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, n = i % N;
    A v = static_cast<A>(x[i]);
    if (c) v = static_cast<A>(static_cast<T>(v * static_cast<A>(c[r])));  // rounded like the reference's x * c
    if (s) v *= static_cast<A>(s[(r / C) * N + n]);
    out[i] = static_cast<T>(v);
  }
}

// dx = g * s * c (unless dx is null) and ds[b, n] = sum_ch g * x * c, one thread per (b, position).
template <typename T>
__global__ void apply_backward_dx_kernel(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ c,
                                         const T* __restrict__ s, T* __restrict__ dx, T* __restrict__ ds, int64_t B,
                                         int64_t C, int64_t N) {
  using A = at::opmath_type<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < B * N; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / N, n = i % N;
    const A sv = s ? static_cast<A>(s[i]) : A(1);
    A dsum = 0;
    for (int64_t ch = 0; ch < C; ++ch) {
      const int64_t off = (b * C + ch) * N + n;
      const A cc = c ? static_cast<A>(c[b * C + ch]) : A(1);
      const A gv = static_cast<A>(g[off]);
      if (dx) dx[off] = static_cast<T>(gv * sv * cc);
      if (ds) dsum += gv * (static_cast<A>(x[off]) * cc);
    }
    if (ds) ds[i] = static_cast<T>(dsum);
  }
}

// dc[b, ch] = sum_n g * s * x, one block per (b, ch).
template <typename T>
__global__ void apply_backward_dc_kernel(const T* __restrict__ g, const T* __restrict__ x, const T* __restrict__ s,
                                         T* __restrict__ dc, int64_t C, int64_t N) {
  using A = at::opmath_type<T>;
  __shared__ A shared[kThreads];
  const int64_t r = blockIdx.x, b = r / C;
  A part = 0;
  for (int64_t n = threadIdx.x; n < N; n += blockDim.x) {
    const A gs = static_cast<A>(g[r * N + n]) * (s ? static_cast<A>(s[b * N + n]) : A(1));
    part += gs * static_cast<A>(x[r * N + n]);
  }
  const A total = block_sum(part, shared);
  if (threadIdx.x == 0) dc[r] = static_cast<T>(total);
}

// The whole input gradient of the fused backward (see cbam.h), one thread per (b, position) walking
// the channels; absent gates are 1, absent pooled gradients 0.
template <typename T>
__global__ void input_backward_kernel(const T* __restrict__ g, const T* __restrict__ c, const T* __restrict__ s,
                                      const T* __restrict__ gp, const int64_t* __restrict__ sarg,
                                      const T* __restrict__ gst, const int64_t* __restrict__ carg, T* __restrict__ dx,
                                      int64_t B, int64_t C, int64_t N, bool avg, bool max) {
  using A = at::opmath_type<T>;
  const int64_t P = int64_t(avg) + int64_t(max);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < B * N; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / N, n = i % N;
    const A sv = s ? static_cast<A>(s[i]) : A(1);
    const A gmax = gp ? static_cast<A>(gp[b * 2 * N + n]) : A(0);
    const A gmean = gp ? static_cast<A>(gp[b * 2 * N + N + n]) / static_cast<A>(C) : A(0);
    const int64_t am = gp ? sarg[i] : -1;
    for (int64_t ch = 0; ch < C; ++ch) {
      const int64_t r = b * C + ch, off = r * N + n;
      A v = static_cast<A>(g[off]) * sv + gmean + (ch == am ? gmax : A(0));
      if (c) v *= static_cast<A>(c[r]);
      if (gst) {
        if (avg) v += static_cast<A>(gst[r * P]) / static_cast<A>(N);
        if (max && carg[r] == n) v += static_cast<A>(gst[r * P + P - 1]);
      }
      dx[off] = static_cast<T>(v);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cbam_channel_pool_cuda(const at::Tensor& x_in, bool avg, bool max) {
  cbam_check_channel_pool("cbam_channel_pool", x_in, avg, max, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
  at::Tensor stats = at::empty({B, C, int64_t(avg) + int64_t(max)}, x.options());
  at::Tensor argmax = at::empty(max ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options().dtype(at::kLong));
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t rows = B * C;
  // Enough blocks for about four per multiprocessor, each part at least 4 elements per thread.
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t parts =
      std::max<int64_t>(1, std::min<int64_t>({(4 * sms + rows - 1) / rows, N / (4 * kThreads), 65535}));
  const auto acc = at::toOpMathType(x.scalar_type());
  at::Tensor ws = at::empty({parts > 1 ? 2 * rows * parts : 0}, x.options().dtype(acc));
  at::Tensor ws_idx = at::empty({parts > 1 ? rows * parts : 0}, x.options().dtype(at::kLong));
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_channel_pool_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    A* part_sum = parts > 1 ? ws.data_ptr<A>() : nullptr;
    A* part_max = parts > 1 ? part_sum + rows * parts : nullptr;
    int64_t* part_idx = parts > 1 ? ws_idx.data_ptr<int64_t>() : nullptr;
    int64_t* am = max ? argmax.data_ptr<int64_t>() : nullptr;
    channel_pool_kernel<scalar_t><<<dim3(row_blocks("cbam_channel_pool", rows), static_cast<unsigned>(parts)),
                                    kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), am, part_sum,
                                              part_max, part_idx, N, avg, max);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (parts > 1) {
      channel_pool_combine_kernel<scalar_t><<<blocks_for(rows), kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), part_sum, part_max, part_idx, stats.data_ptr<scalar_t>(), am, rows, parts, N, avg,
          max);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {stats, argmax};
}

at::Tensor cbam_channel_pool_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x, const at::Tensor& argmax_in,
                                           bool avg, bool max) {
  const char* op = "cbam_channel_pool_backward";
  cbam_check_channel_pool(op, x, avg, max, at::kCUDA);
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
  cbam_check_like(op, "grad_stats", grad_in, x, {B, C, int64_t(avg) + int64_t(max)});
  cbam_check_index(op, "argmax", argmax_in, x, max ? at::IntArrayRef{B, C} : at::IntArrayRef{0});
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor grad = grad_in.contiguous(), argmax = argmax_in.contiguous();
  at::Tensor dx = at::empty(x.sizes(), x.options());
  const int64_t total = B * C * N;
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_channel_pool_backward_cuda", [&] {
    channel_pool_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), max ? argmax.data_ptr<int64_t>() : nullptr, dx.data_ptr<scalar_t>(), total, N, avg,
        max);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& c_in) {
  cbam_check_x("cbam_spatial_pool", x_in, at::kCUDA);
  cbam_check_gates("cbam_spatial_pool", x_in, c_in, std::nullopt);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const auto c = opt_contig(c_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor pooled = at::empty({B, 2, H, W}, x.options());
  at::Tensor argmax = at::empty({B, H, W}, x.options().dtype(at::kLong));
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_spatial_pool_cuda", [&] {
    spatial_pool_kernel<scalar_t><<<blocks_for(B * H * W), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), pooled.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(), B, C,
        H * W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {pooled, argmax};
}

std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                   const std::optional<at::Tensor>& c_in,
                                                                   const at::Tensor& argmax_in, bool input_grad) {
  const char* op = "cbam_spatial_pool_backward";
  cbam_check_x(op, x_in, at::kCUDA);
  cbam_check_gates(op, x_in, c_in, std::nullopt);
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3), N = H * W;
  cbam_check_like(op, "grad_pooled", grad_in, x_in, {B, 2, H, W});
  cbam_check_index(op, "argmax", argmax_in, x_in, {B, H, W});
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous(), argmax = argmax_in.contiguous();
  const auto c = opt_contig(c_in);
  at::Tensor dx = at::empty(input_grad ? x.sizes() : at::IntArrayRef{0}, x.options());
  at::Tensor dc = at::empty(c.has_value() ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_spatial_pool_backward_cuda", [&] {
    if (input_grad) {
      spatial_pool_backward_dx_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), argmax.data_ptr<int64_t>(), dx.data_ptr<scalar_t>(), B, C,
          N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (c.has_value()) {
      spatial_pool_backward_dc_kernel<scalar_t><<<row_blocks(op, B * C), kThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(), dc.data_ptr<scalar_t>(), C, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {dx, dc};
}

at::Tensor cbam_apply_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& c_in,
                           const std::optional<at::Tensor>& s_in) {
  cbam_check_x("cbam_apply", x_in, at::kCUDA);
  cbam_check_gates("cbam_apply", x_in, c_in, s_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in);
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t total = x.numel();
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_apply_cuda", [&] {
    apply_kernel<scalar_t><<<blocks_for(total), kThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), opt_ptr<scalar_t>(s), out.data_ptr<scalar_t>(), total, x.size(1),
        x.size(2) * x.size(3));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cbam_apply_backward_cuda(const at::Tensor& grad_in,
                                                                        const at::Tensor& x_in,
                                                                        const std::optional<at::Tensor>& c_in,
                                                                        const std::optional<at::Tensor>& s_in,
                                                                        bool input_grad) {
  const char* op = "cbam_apply_backward";
  cbam_check_x(op, x_in, at::kCUDA);
  cbam_check_gates(op, x_in, c_in, s_in);
  cbam_check_like(op, "grad", grad_in, x_in, x_in.sizes());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), N = H * W;
  at::Tensor dx = at::empty(input_grad ? x.sizes() : at::IntArrayRef{0}, x.options());
  at::Tensor dc = at::empty(c.has_value() ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options());
  at::Tensor ds = at::empty(s.has_value() ? at::IntArrayRef{B, H, W} : at::IntArrayRef{0}, x.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_apply_backward_cuda", [&] {
    if (input_grad || s.has_value()) {
      apply_backward_dx_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), opt_ptr<scalar_t>(s),
          input_grad ? dx.data_ptr<scalar_t>() : nullptr, s.has_value() ? ds.data_ptr<scalar_t>() : nullptr, B, C, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (c.has_value()) {
      apply_backward_dc_kernel<scalar_t><<<row_blocks(op, B * C), kThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(s), dc.data_ptr<scalar_t>(), C, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {dx, dc, ds};
}

at::Tensor cbam_input_backward_cuda(const at::Tensor& grad_in, const std::optional<at::Tensor>& c_in,
                                    const std::optional<at::Tensor>& s_in, const std::optional<at::Tensor>& gp_in,
                                    const std::optional<at::Tensor>& sarg_in, const std::optional<at::Tensor>& gst_in,
                                    const std::optional<at::Tensor>& carg_in, bool avg, bool max) {
  cbam_check_input_backward("cbam_input_backward", grad_in, c_in, s_in, gp_in, sarg_in, gst_in, carg_in, avg, max,
                            at::kCUDA);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in), gp = opt_contig(gp_in), sarg = opt_contig(sarg_in);
  const auto gst = opt_contig(gst_in), carg = opt_contig(carg_in);
  const int64_t B = grad.size(0), C = grad.size(1), N = grad.size(2) * grad.size(3);
  at::Tensor dx = at::empty(grad.sizes(), grad.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(grad.scalar_type(), "cbam_input_backward_cuda", [&] {
    input_backward_kernel<scalar_t><<<blocks_for(B * N), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), opt_ptr<scalar_t>(s), opt_ptr<scalar_t>(gp),
        opt_ptr<int64_t>(sarg), opt_ptr<scalar_t>(gst), gst.has_value() && max ? carg->data_ptr<int64_t>() : nullptr,
        dx.data_ptr<scalar_t>(), B, C, N, avg, max);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CUDA, m) {
  m.impl("cbam_channel_pool", &cbam_channel_pool_cuda);
  m.impl("cbam_channel_pool_backward", &cbam_channel_pool_backward_cuda);
  m.impl("cbam_spatial_pool", &cbam_spatial_pool_cuda);
  m.impl("cbam_spatial_pool_backward", &cbam_spatial_pool_backward_cuda);
  m.impl("cbam_apply", &cbam_apply_cuda);
  m.impl("cbam_apply_backward", &cbam_apply_backward_cuda);
  m.impl("cbam_input_backward", &cbam_input_backward_cuda);
}

}  // namespace srops
