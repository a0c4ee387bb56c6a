// C++ CPU kernels of covariance pooling, float32 and float64, on the covariance and
// centred-product code of covpool_sqrtm (chunked Gram matrices on a register-tiled GEMM,
// accumulated across chunks in double, so M up to ~1e6 stays accurate):
//   forward  Σ = (X − μ1ᵀ)(X − μ1ᵀ)ᵀ / M
//   backward dx = (G + Gᵀ)(X − μ1ᵀ) / M
#include <torch/library.h>

#include "covpool/covpool.h"
#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {

at::Tensor covpool_fwd_cpu(const at::Tensor& x_in) {
  check_covpool_x("covpool_fwd", x_in, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1);
  at::Tensor out = at::empty({B, C, C}, x.options());
  covariance_cpu(x, out);
  return out;
}

at::Tensor covpool_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_covpool_x("covpool_bwd", x_in, at::kCPU);
  check_covpool_grad("covpool_bwd", grad_in, x_in, at::kCPU);
  const int64_t M = x_in.size(2);
  const at::Tensor x = x_in.contiguous();
  at::Tensor dx = at::empty_like(x);
  const at::Tensor g = ((grad_in + grad_in.transpose(1, 2)) / static_cast<double>(M)).contiguous();
  centred_product_cpu(g, x, dx);
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_fwd", &covpool_fwd_cpu);
  m.impl("covpool_bwd", &covpool_bwd_cpu);
}

}  // namespace srops
