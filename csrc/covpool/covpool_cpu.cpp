// C++ CPU kernels of covariance pooling, float32 and float64, on covpool_sqrtm's CPU building blocks
// (covpool_sqrtm_cpu.cpp): the centring in one pass per row (means summed in double), the products on
// ATen's batched GEMM, the reference's BLAS (x is centred in cache-sized chunks):
//   forward  Σ = (X − μ1ᵀ)(X − μ1ᵀ)ᵀ / M, exactly symmetric
//   backward dx = (G + Gᵀ)(X − μ1ᵀ) / M, one GEMM (autograd through the reference runs two)
#include <torch/library.h>

#include "covpool/covpool.h"
#include "covpool/covpool_sqrtm.h"

namespace srops {

at::Tensor covpool_fwd_cpu(const at::Tensor& x_in) {
  check_covpool_x("covpool_fwd", x_in, at::kCPU);
  at::Tensor mean;
  return centred_gram_cpu(x_in.contiguous(), mean);
}

at::Tensor covpool_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_covpool_x("covpool_bwd", x_in, at::kCPU);
  check_covpool_grad("covpool_bwd", grad_in, x_in, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor g = (grad_in + grad_in.transpose(1, 2)).div_(static_cast<double>(x.size(2)));
  return centred_product_cpu(g, x, row_means_cpu(x));
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_fwd", &covpool_fwd_cpu);
  m.impl("covpool_bwd", &covpool_bwd_cpu);
}

}  // namespace srops
