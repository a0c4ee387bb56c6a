// Launchers of srops::covpool_sqrtm_fwd/bwd and srops::covpool_fwd/bwd on CUDA (see covpool_sqrtm.h):
// argument checks, device guard, stream, allocation and launch configuration (covpool_sqrtm_launch.h);
// the kernels are in covpool_sqrtm_kernels.cuh, the registrations in covpool_sqrtm_cuda_register.cpp.
// x may be float16, bfloat16, float32 or float64; maths runs in float32 (float64 for float64 x).
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

#include "common/checks.h"
#include "common/cuda_device.cuh"
#include "covpool/covpool.h"
#include "covpool_sqrtm/covpool_sqrtm.h"
#include "covpool_sqrtm/covpool_sqrtm_cuda.h"
#include "covpool_sqrtm/covpool_sqrtm_kernels.cuh"

namespace srops {

using covpool_kernels::dx_kernel;
using covpool_kernels::gram_kernel;
using covpool_kernels::row_mean_kernel;

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
  const GramSplit split = gram_split(B, C, M, current_device_desc());
  const int64_t nt = split.tiles, S = split.splits, split_len = split.split_len;
  at::Tensor part = at::zeros({B, S, C, C}, opt);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "covpool_sqrtm_fwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    row_mean_kernel<scalar_t, acc_t>
        <<<B * C, kCovThreads, 0, stream>>>(x.data_ptr<scalar_t>(), mean.data_ptr<acc_t>(), M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const dim3 grid(static_cast<unsigned>(nt * nt), static_cast<unsigned>(S), static_cast<unsigned>(B));
    gram_kernel<scalar_t, acc_t><<<grid, kCovThreads, 0, stream>>>(x.data_ptr<scalar_t>(), mean.data_ptr<acc_t>(),
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
  TORCH_CHECK_VALUE(B <= 65535 && ceil_div(C, kCovTile) <= 65535,
                    "srops::covpool_sqrtm_bwd: x must have B <= 65535 and ",
                    "C <= ", 65535 * kCovTile, ", got shape ", x.sizes());
  at::Tensor gx = at::empty({B, C, C}, a.options()), v = at::empty({B, C}, a.options());
  if (!sqrtm_backward_smem(grad, out, mean, a, states, trace, M, row_mean, gx, v)) {
    std::tie(gx, v) = sqrtm_backward_bmm(grad, out, mean, a, states, trace, M, row_mean);
  }
  at::Tensor dx = at::empty_like(x);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "covpool_sqrtm_bwd_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const dim3 grid(static_cast<unsigned>(ceil_div(M, kCovTile)), static_cast<unsigned>(ceil_div(C, kCovTile)),
                    static_cast<unsigned>(B));
    dx_kernel<scalar_t, acc_t><<<grid, kCovThreads, 0, stream>>>(x.data_ptr<scalar_t>(), gx.data_ptr<acc_t>(),
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
    row_mean_kernel<scalar_t, scalar_t><<<B * C, kCovThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
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
  const GramSplit split = gram_split(B, C, M, current_device_desc());
  const int64_t nt = split.tiles, S = split.splits;
  at::Tensor part = at::zeros({B, S, C, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_fwd_cuda", [&] {
    const dim3 grid(static_cast<unsigned>(nt * nt), static_cast<unsigned>(S), static_cast<unsigned>(B));
    gram_kernel<scalar_t, scalar_t><<<grid, kCovThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), part.data_ptr<scalar_t>(), C, M, split.split_len);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const at::Tensor gram = part.sum(1);
  return ((at::triu(gram) + at::triu(gram, 1).transpose(1, 2)) / static_cast<double>(M)).contiguous();
}

at::Tensor covpool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_covpool_x_cuda("covpool_bwd", x_in);
  check_covpool_grad("covpool_bwd", grad_in, x_in, at::kCUDA);
  const int64_t B = x_in.size(0), C = x_in.size(1), M = x_in.size(2);
  TORCH_CHECK_VALUE(ceil_div(C, kCovTile) <= 65535, "srops::covpool_bwd: x must have C <= ", 65535 * kCovTile,
                    ", got ", C);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor mean = row_means_cuda(x);
  const at::Tensor gx = ((grad_in + grad_in.transpose(1, 2)) / static_cast<double>(M)).contiguous();
  const at::Tensor v = at::bmm(gx, mean.unsqueeze(2)).squeeze(2).contiguous();
  at::Tensor dx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_bwd_cuda", [&] {
    const dim3 grid(static_cast<unsigned>(ceil_div(M, kCovTile)), static_cast<unsigned>(ceil_div(C, kCovTile)),
                    static_cast<unsigned>(B));
    dx_kernel<scalar_t, scalar_t><<<grid, kCovThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), gx.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), C, M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace srops
