// C++ CPU kernels of srops::covpool_sqrtm_fwd/bwd (see covpool_sqrtm.h) and the covariance code of
// srops::covpool_fwd/bwd, float32 and float64.
//
// Every O(C²M) and O(C³) product is ATen's batched GEMM (at::bmm), i.e. the platform BLAS that the
// reference's torch.bmm runs on (MKL / oneDNN / OpenBLAS, whichever PyTorch was built with), so no product
// is slower than the reference's on any CPU. What is fused or saved around them:
//   - the row means (summed in double, so a constant row centres to exactly zero) and the centring in one
//     pass per row;
//   - the Newton–Schulz iterates are the ones the backward reads (no recomputation, no autograd graph);
//   - the backward runs the analytic chain (sqrtm_bmm.cpp) and one GEMM, dx = gx (X − μ1ᵀ), where autograd
//     through the reference runs two.
// The iterations are the reference's products in the reference's order, unsymmetrised: for a rank-deficient
// Σ, Z grows as 1.5^k on Σ's null space, and forcing Y, Z or Y·Z symmetric moves rounding from the rows of
// Y that Z·Y multiplies by nothing into the ones it multiplies by Z, which made the error grow ~10× faster.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {
namespace {

// xc[r, :] = x[r, :] − μ_r and mean[r] = μ_r for the rows r of x [rows, M]; μ summed in double.
template <typename T>
void centre_rows(const T* x, T* mean, T* xc, int64_t rows, int64_t M) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * M;
      double total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t m = 0; m < M; ++m) total += static_cast<double>(xr[m]);
      const T mu = static_cast<T>(total / static_cast<double>(M));
      mean[r] = mu;
      T* dst = xc + r * M;
#pragma omp simd
      for (int64_t m = 0; m < M; ++m) dst[m] = xr[m] - mu;
    }
  });
}

}  // namespace

at::Tensor centre_cpu(const at::Tensor& x, at::Tensor& mean) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor xc = at::empty_like(x);
  mean = at::empty({B, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_centre_cpu", [&] {
    centre_rows<scalar_t>(x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), B * C, M);
  });
  return xc;
}

at::Tensor gram_cpu(const at::Tensor& xc) {
  at::Tensor g = at::bmm(xc, xc.transpose(1, 2)).div_(static_cast<double>(xc.size(2)));
  // exactly symmetric, whatever the BLAS's blocking: the upper triangle mirrored
  return at::triu(g).add_(at::triu(g, 1).transpose(1, 2));
}

SqrtmFwdResult covpool_sqrtm_fwd_cpu(const at::Tensor& x_in, int64_t iterations, double eps, bool row_mean) {
  check_sqrtm_fwd_args(x_in, iterations, eps, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), N = iterations;
  at::Tensor mean;
  const at::Tensor sigma = gram_cpu(centre_cpu(x, mean));
  const at::Tensor trace = sigma.diagonal(0, 1, 2).sum(1, false, at::kDouble).add_(eps).to(x.scalar_type());
  const at::Tensor a = normalise_by_trace(sigma, trace);
  at::Tensor out = row_mean ? at::empty({B, C}, x.options()) : at::empty({B, C, C}, x.options());
  at::Tensor states = at::empty({B, 3 * (N - 1), C, C}, x.options());
  sqrtm_forward_bmm(a, trace, N, row_mean, out, states);
  return {out, mean, a, states, trace};
}

at::Tensor covpool_sqrtm_bwd_cpu(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& mean,
                                 const at::Tensor& a, const at::Tensor& states, const at::Tensor& trace,
                                 const at::Tensor& out, bool row_mean) {
  check_sqrtm_bwd_args(grad, x_in, mean, a, states, trace, out, row_mean, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(2);
  const at::Tensor gx = sqrtm_backward_bmm(grad.contiguous(), out.contiguous(), a.contiguous(), states.contiguous(),
                                           trace.contiguous(), M, row_mean);
  at::Tensor dx = at::empty_like(x);
  at::bmm_out(dx, gx, x - mean.unsqueeze(2));
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_sqrtm_fwd", &covpool_sqrtm_fwd_cpu);
  m.impl("covpool_sqrtm_bwd", &covpool_sqrtm_bwd_cpu);
}

}  // namespace srops
