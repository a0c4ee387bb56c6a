// Launchers of srops::covpool_sqrtm_fwd/bwd and srops::covpool_fwd/bwd on CUDA (see covpool_sqrtm.h):
// argument checks, device guard, stream, allocation and launch configuration (covpool_sqrtm_launch.h);
// the kernels are in covpool_sqrtm_kernels.cuh, the registrations in covpool_sqrtm_cuda_register.cpp.
// x may be float16, bfloat16, float32 or float64; maths runs in float32 (float64 for float64 x).
//
// forward : row means (one block per row) -> the centred x in split-K chunks (float32/float64) -> Σ by
//           batched GEMM over (sample, chunk), the chunks summed in a fixed order (deterministic;
//           centred_gemm.h) -> A, t -> Newton–Schulz iterations, one block per sample for C <= 128
//           (matrices in shared memory when they fit, else in an L2-resident scratch buffer), batched
//           at::bmm above.
// backward: the analytic chain (shared memory per sample, or at::bmm) -> gx = (dΣ + dΣᵀ)/M -> the
//           centred x again -> dx = gx·(X − μ1ᵀ) by batched GEMM (centred first: no cancellation).
// The GEMMs are cuBLAS's; float32 ones follow PyTorch's float32 matmul precision setting.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "common/checks.h"
#include "common/cuda_device.cuh"
#include "covpool/covpool.h"
#include "covpool/covpool_sqrtm.h"
#include "covpool/centred_gemm.h"
#include "covpool/covpool_sqrtm_cuda.h"
#include "covpool/covpool_sqrtm_kernels.cuh"

namespace srops {
namespace {

using covpool_kernels::centre_kernel;
using covpool_kernels::row_mean_kernel;

void check_batch(const char* op, const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.size(0) <= 65535, "srops::", op, ": x must have batch size B <= 65535, got ", x.size(0));
}

// Row means of x [B, C, M] (contiguous) in the accumulation type, [B, C].
at::Tensor row_means_cuda(const at::Tensor& x) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor mean;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "covpool_mean_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    mean = at::empty({B, C}, x.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    TORCH_CHECK_VALUE(B * C <= int64_t(INT32_MAX), "srops::covpool: x must have B·C < 2^31 rows, got ", B * C);
    row_mean_kernel<scalar_t, acc_t><<<static_cast<unsigned>(B * C), kCovThreads, 0,
                                       at::cuda::getCurrentCUDAStream()>>>(x.data_ptr<scalar_t>(),
                                                                           mean.data_ptr<acc_t>(), M);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return mean;
}

// x − μ1ᵀ in S column chunks of L, [B, S, C, L] of mean's (accumulation) type, zero past M.
at::Tensor centred_chunks(const at::Tensor& x, const at::Tensor& mean, int64_t S, int64_t L) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2), rows = B * S * C;
  at::Tensor out = at::empty({B, S, C, L}, mean.options());
  const PositionGrid g = position_grid(rows, L, kCovThreads);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "covpool_centre_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    centre_kernel<scalar_t, acc_t><<<dim3(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y)), kCovThreads, 0,
                                     at::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<scalar_t>(), mean.data_ptr<acc_t>(), out.data_ptr<acc_t>(), rows, C, M, S, L);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// Σ [B, C, C] of x (contiguous) with its row means.
at::Tensor covariance_cuda(const at::Tensor& x, const at::Tensor& mean) {
  const GramSplit split = gram_split(x.size(0), x.size(1), x.size(2), current_device_desc());
  return gram_of_chunks(centred_chunks(x, mean, split.splits, split.split_len), x.size(2));
}

// dx = gx·(X − μ1ᵀ) in x's dtype; gx [B, C, C] of the accumulation type.
at::Tensor centred_product_cuda(const at::Tensor& gx, const at::Tensor& x, const at::Tensor& mean) {
  const at::Tensor xc = centred_chunks(x, mean, 1, x.size(2)).squeeze(1);
  if (xc.scalar_type() == x.scalar_type()) {
    at::Tensor dx = at::empty_like(x);
    at::bmm_out(dx, gx, xc);
    return dx;
  }
  return at::bmm(gx, xc).to(x.scalar_type());
}

}  // namespace

SqrtmFwdResult covpool_sqrtm_fwd_cuda(const at::Tensor& x_in, int64_t iterations, double eps, bool row_mean) {
  check_sqrtm_fwd_args(x_in, iterations, eps, at::kCUDA);
  check_batch("covpool_sqrtm_fwd", x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), N = iterations;
  const at::Tensor mean = row_means_cuda(x);
  const auto opt = mean.options();
  at::Tensor out = row_mean ? at::empty({B, C}, opt) : at::empty({B, C, C}, opt);
  at::Tensor states = at::empty({B, 3 * (N - 1), C, C}, opt);
  const at::Tensor sigma = covariance_cuda(x, mean);
  const at::Tensor trace = sigma.diagonal(0, 1, 2).sum(1) + eps;
  const at::Tensor a = normalise_by_trace(sigma, trace);
  if (!sqrtm_forward_smem(a, trace, N, row_mean, out, states)) sqrtm_forward_bmm(a, trace, N, row_mean, out, states);
  return {out, mean, a, states, trace};
}

at::Tensor covpool_sqrtm_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& mean_in,
                                  const at::Tensor& a_in, const at::Tensor& states_in, const at::Tensor& trace_in,
                                  const at::Tensor& out_in, bool row_mean) {
  check_sqrtm_bwd_args(grad_in, x_in, mean_in, a_in, states_in, trace_in, out_in, row_mean, at::kCUDA);
  check_batch("covpool_sqrtm_bwd", x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous(), mean = mean_in.contiguous(),
                   a = a_in.contiguous(), states = states_in.contiguous(), trace = trace_in.contiguous(),
                   out = out_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor gx = at::empty({B, C, C}, a.options());
  if (!sqrtm_backward_smem(grad, out, a, states, trace, M, row_mean, gx)) {
    gx = sqrtm_backward_bmm(grad, out, a, states, trace, M, row_mean);
  } else {
    zero_where_trace_zero(gx, trace);  // the kernel's chain divides by t
  }
  return centred_product_cuda(gx, x, mean);
}

// Plain covariance pooling (srops::covpool_fwd/bwd, float32/float64) on the same kernels.
at::Tensor covpool_fwd_cuda(const at::Tensor& x_in) {
  check_covpool_x("covpool_fwd", x_in, at::kCUDA);
  check_batch("covpool_fwd", x_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  return covariance_cuda(x, row_means_cuda(x));
}

at::Tensor covpool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_covpool_x("covpool_bwd", x_in, at::kCUDA);
  check_batch("covpool_bwd", x_in);
  check_covpool_grad("covpool_bwd", grad_in, x_in, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor gx = (grad_in + grad_in.transpose(1, 2)) / static_cast<double>(x.size(2));
  return centred_product_cuda(gx.contiguous(), x, row_means_cuda(x));
}

}  // namespace srops
