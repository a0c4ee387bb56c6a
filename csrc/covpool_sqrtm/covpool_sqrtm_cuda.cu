// CUDA kernels of srops::covpool_sqrtm_fwd/bwd (see covpool_sqrtm.h). x may be float16,
// bfloat16, float32 or float64; maths runs in float32 (float64 for float64 x).
//
// forward : row means (one block per row) -> Gram matrix of the centred x, upper 32×32 tiles,
//           with M split across blocks into per-split partial sums (reduced with ATen, fixed
//           order: deterministic) -> A, t -> Newton–Schulz iterations, one block per sample
//           for C <= 128 (matrices in shared memory when they fit, else in an L2-resident
//           scratch buffer), batched at::bmm above.
// backward: the analytic chain (shared memory per sample, or at::bmm) -> gx = (dΣ + dΣᵀ)/M,
//           v = gx·μ -> dx = gx·X − v1ᵀ by a tiled GEMM over (C, M) tiles.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "common/checks.h"
#include "covpool/covpool.h"
#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {
namespace {

constexpr int kTile = 32;     // output tile side of the GEMM kernels
constexpr int kThreads = 256; // 16×16 threads, 2×2 outputs each

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <typename scalar_t, typename acc_t>
__global__ void row_mean_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ mean, int64_t M) {
  __shared__ acc_t red[kThreads];
  const int64_t row = blockIdx.x;
  const scalar_t* xr = x + row * M;
  acc_t s = 0;
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) s += static_cast<acc_t>(xr[m]);
  red[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) mean[row] = red[0] / static_cast<acc_t>(M);
}

// part[b, s, i, j] = sum over m in split s of (x_bi,m − μ_bi)(x_bj,m − μ_bj), tiles (ti <= tj) only.
// grid: (ntiles², S, B).
template <typename scalar_t, typename acc_t>
__global__ void gram_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ mean, acc_t* __restrict__ part,
                            int64_t C, int64_t M, int64_t split_len) {
  __shared__ acc_t xi[kTile][kTile + 1];
  __shared__ acc_t xj[kTile][kTile + 1];
  const int64_t nt = (C + kTile - 1) / kTile;
  const int64_t ti = blockIdx.x / nt, tj = blockIdx.x % nt;
  if (ti > tj) return;
  const int64_t b = blockIdx.z, s = blockIdx.y, S = gridDim.y;
  const int64_t i0 = ti * kTile, j0 = tj * kTile;
  const int64_t m_begin = s * split_len, m_end = (m_begin + split_len < M) ? m_begin + split_len : M;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  acc_t acc[2][2] = {{0, 0}, {0, 0}};
  for (int64_t m0 = m_begin; m0 < m_end; m0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
      const int r = e / kTile, c = e % kTile;
      const int64_t m = m0 + c;
      const int64_t gi = i0 + r, gj = j0 + r;
      xi[r][c] = (gi < C && m < m_end) ? static_cast<acc_t>(x[(b * C + gi) * M + m]) - mean[b * C + gi] : acc_t(0);
      xj[r][c] = (gj < C && m < m_end) ? static_cast<acc_t>(x[(b * C + gj) * M + m]) - mean[b * C + gj] : acc_t(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kTile; ++k) {
      const acc_t a0 = xi[ty][k], a1 = xi[ty + 16][k];
      const acc_t b0 = xj[tx][k], b1 = xj[tx + 16][k];
      acc[0][0] += a0 * b0;
      acc[0][1] += a0 * b1;
      acc[1][0] += a1 * b0;
      acc[1][1] += a1 * b1;
    }
    __syncthreads();
  }
  acc_t* out = part + (b * S + s) * C * C;
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      const int64_t i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
      if (i < C && j < C) out[i * C + j] = acc[r][c];
    }
}

// dx[b, i, m] = sum_j gx[b, i, j] x[b, j, m] − v[b, i]. grid: (ceil(M/32), ceil(C/32), B).
template <typename scalar_t, typename acc_t>
__global__ void dx_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ gx, const acc_t* __restrict__ v,
                          scalar_t* __restrict__ dx, int64_t C, int64_t M) {
  __shared__ acc_t gs[kTile][kTile + 1];
  __shared__ acc_t xs[kTile][kTile + 1];
  const int64_t b = blockIdx.z, i0 = static_cast<int64_t>(blockIdx.y) * kTile,
                m0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  acc_t acc[2][2] = {{0, 0}, {0, 0}};
  for (int64_t j0 = 0; j0 < C; j0 += kTile) {
    for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
      const int r = e / kTile, c = e % kTile;
      const int64_t gi = i0 + r, gj = j0 + c;
      gs[r][c] = (gi < C && gj < C) ? gx[(b * C + gi) * C + gj] : acc_t(0);
      const int64_t xj = j0 + r, m = m0 + c;
      xs[r][c] = (xj < C && m < M) ? static_cast<acc_t>(x[(b * C + xj) * M + m]) : acc_t(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kTile; ++k) {
      const acc_t a0 = gs[ty][k], a1 = gs[ty + 16][k];
      const acc_t b0 = xs[k][tx], b1 = xs[k][tx + 16];
      acc[0][0] += a0 * b0;
      acc[0][1] += a0 * b1;
      acc[1][0] += a1 * b0;
      acc[1][1] += a1 * b1;
    }
    __syncthreads();
  }
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      const int64_t i = i0 + ty + 16 * r, m = m0 + tx + 16 * c;
      if (i < C && m < M) dx[(b * C + i) * M + m] = static_cast<scalar_t>(acc[r][c] - v[b * C + i]);
    }
}

}  // namespace

// Per-sample iterations (sqrtm_smem_cuda.cu); false above C = 128 (then the at::bmm path runs).
bool sqrtm_forward_smem(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                        at::Tensor& states);
bool sqrtm_backward_smem(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& mean, const at::Tensor& a,
                         const at::Tensor& states, const at::Tensor& trace, int64_t M, bool row_mean, at::Tensor& gx,
                         at::Tensor& v);

SqrtmFwdResult covpool_sqrtm_fwd_cuda(const at::Tensor& x_in, int64_t iterations, double eps, bool row_mean) {
  check_sqrtm_fwd_args(x_in, iterations, eps, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2), N = iterations;
  TORCH_CHECK_VALUE(B <= 65535, "srops::covpool_sqrtm_fwd: x must have batch size B <= 65535, got ", B);
  const auto opt = x.options().dtype(x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat);
  at::Tensor out = row_mean ? at::empty({B, C}, opt) : at::empty({B, C, C}, opt);
  at::Tensor mean = at::empty({B, C}, opt);
  at::Tensor states = at::empty({B, 3 * (N - 1), C, C}, opt);
  const int64_t nt = ceil_div(C, kTile);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t S = std::clamp(ceil_div(4 * sms, B * (nt * (nt + 1) / 2)), int64_t(1),
                               std::min<int64_t>(ceil_div(M, 256), 65535));
  const int64_t split_len = ceil_div(M, S);
  at::Tensor part = at::zeros({B, S, C, C}, opt);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "covpool_sqrtm_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    row_mean_kernel<scalar_t, acc_t><<<B * C, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), mean.data_ptr<acc_t>(), M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 grid(static_cast<unsigned>(nt * nt), static_cast<unsigned>(S), static_cast<unsigned>(B));
    gram_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), mean.data_ptr<acc_t>(),
                                                                part.data_ptr<acc_t>(), C, M, split_len);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor gram = part.sum(1);
  const at::Tensor sigma = (at::triu(gram) + at::triu(gram, 1).transpose(1, 2)) / static_cast<double>(M);
  const at::Tensor trace = sigma.diagonal(0, 1, 2).sum(1) + eps;
  const at::Tensor a = (sigma / trace.view({B, 1, 1})).contiguous();
  if (!sqrtm_forward_smem(a, trace, N, row_mean, out, states)) sqrtm_forward_bmm(a, trace, N, row_mean, out, states);
  return {out, mean, a, states, trace};
}

at::Tensor covpool_sqrtm_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& mean_in,
                                  const at::Tensor& a_in, const at::Tensor& states_in, const at::Tensor& trace_in,
                                  const at::Tensor& out_in, bool row_mean) {
  check_sqrtm_bwd_args(grad_in, x_in, mean_in, a_in, states_in, trace_in, out_in, row_mean, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous(), mean = mean_in.contiguous(),
                   a = a_in.contiguous(), states = states_in.contiguous(), trace = trace_in.contiguous(),
                   out = out_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  TORCH_CHECK_VALUE(B <= 65535 && ceil_div(C, kTile) <= 65535, "srops::covpool_sqrtm_bwd: x must have B <= 65535 and ",
                    "C <= ", 65535 * kTile, ", got shape ", x.sizes());
  at::Tensor gx = at::empty({B, C, C}, a.options()), v = at::empty({B, C}, a.options());
  if (!sqrtm_backward_smem(grad, out, mean, a, states, trace, M, row_mean, gx, v)) {
    std::tie(gx, v) = sqrtm_backward_bmm(grad, out, mean, a, states, trace, M, row_mean);
  }
  at::Tensor dx = at::empty_like(x);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "covpool_sqrtm_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const dim3 grid(static_cast<unsigned>(ceil_div(M, kTile)), static_cast<unsigned>(ceil_div(C, kTile)),
                    static_cast<unsigned>(B));
    dx_kernel<scalar_t, acc_t><<<grid, kThreads, 0, stream>>>(x.data_ptr<scalar_t>(), gx.data_ptr<acc_t>(),
                                                              v.data_ptr<acc_t>(), dx.data_ptr<scalar_t>(), C, M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

// Plain covariance pooling (srops::covpool_fwd/bwd, float32/float64) on the same kernels.
namespace {

void check_covpool_x_cuda(const char* op, const at::Tensor& x) {
  check_covpool_x(op, x, at::kCUDA);
  TORCH_CHECK_VALUE(x.size(0) <= 65535, "srops::", op, ": x must have batch size B <= 65535, got ", x.size(0));
}

at::Tensor row_means_cuda(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor mean = at::empty({B, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_mean_cuda", [&] {
    row_mean_kernel<scalar_t, scalar_t><<<B * C, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return mean;
}

}  // namespace

at::Tensor covpool_fwd_cuda(const at::Tensor& x_in) {
  check_covpool_x_cuda("covpool_fwd", x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  const at::Tensor mean = row_means_cuda(x);
  const int64_t nt = ceil_div(C, kTile);
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t S = std::clamp(ceil_div(4 * sms, B * (nt * (nt + 1) / 2)), int64_t(1),
                               std::min<int64_t>(ceil_div(M, 256), 65535));
  at::Tensor part = at::zeros({B, S, C, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_fwd_cuda", [&] {
    const dim3 grid(static_cast<unsigned>(nt * nt), static_cast<unsigned>(S), static_cast<unsigned>(B));
    gram_kernel<scalar_t, scalar_t><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), part.data_ptr<scalar_t>(), C, M, ceil_div(M, S));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor gram = part.sum(1);
  return ((at::triu(gram) + at::triu(gram, 1).transpose(1, 2)) / static_cast<double>(M)).contiguous();
}

at::Tensor covpool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_covpool_x_cuda("covpool_bwd", x_in);
  check_covpool_grad("covpool_bwd", grad_in, x_in, at::kCUDA);
  const int64_t B = x_in.size(0), C = x_in.size(1), M = x_in.size(2);
  TORCH_CHECK_VALUE(ceil_div(C, kTile) <= 65535, "srops::covpool_bwd: x must have C <= ", 65535 * kTile, ", got ", C);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor mean = row_means_cuda(x);
  const at::Tensor gx = ((grad_in + grad_in.transpose(1, 2)) / static_cast<double>(M)).contiguous();
  const at::Tensor v = at::bmm(gx, mean.unsqueeze(2)).squeeze(2).contiguous();
  at::Tensor dx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_bwd_cuda", [&] {
    const dim3 grid(static_cast<unsigned>(ceil_div(M, kTile)), static_cast<unsigned>(ceil_div(C, kTile)),
                    static_cast<unsigned>(B));
    dx_kernel<scalar_t, scalar_t><<<grid, kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), C, M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CUDA, m) {
  m.impl("covpool_sqrtm_fwd", &covpool_sqrtm_fwd_cuda);
  m.impl("covpool_sqrtm_bwd", &covpool_sqrtm_bwd_cuda);
  m.impl("covpool_fwd", &covpool_fwd_cuda);
  m.impl("covpool_bwd", &covpool_bwd_cuda);
}

}  // namespace srops
