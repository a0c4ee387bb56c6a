// C++ CPU kernels of covariance pooling, float32 and float64, on the covariance and
// centred-product code of covpool_sqrtm (chunked Gram matrices on a register-tiled GEMM,
// accumulated across chunks in double, so M up to ~1e6 stays accurate):
//   forward  Σ = (X − μ1ᵀ)(X − μ1ᵀ)ᵀ / M
//   backward dx = (G + Gᵀ)(X − μ1ᵀ) / M
#include <torch/library.h>

#include "common/checks.h"
#include "covpool/covpool.h"
#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {
namespace {

void check_x(const char* op, const at::Tensor& x) {
  check_dim(op, "x", x, 3, "[B, C, M]");
  check_float_or_double(op, "x", x);
  check_device_type(op, "x", x, at::kCPU);
  check_nonempty(op, "x", x);
}

}  // namespace

at::Tensor covpool_fwd_cpu(const at::Tensor& x_in) {
  check_x("covpool_fwd", x_in);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor out = at::empty({B, C, C}, x.options());
  covariance_cpu(x, out);
  return out;
}

at::Tensor covpool_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_x("covpool_bwd", x_in);
  const int64_t B = x_in.size(0), C = x_in.size(1), M = x_in.size(2);
  check_same_dtype("covpool_bwd", "grad", grad_in, x_in);
  check_device_type("covpool_bwd", "grad", grad_in, at::kCPU);
  check_shape("covpool_bwd", "grad", grad_in, {B, C, C});
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  at::Tensor dx = at::empty_like(x);
  const at::Tensor g = ((grad + grad.transpose(1, 2)) / static_cast<double>(M)).contiguous();
  centred_product_cpu(g, x, dx);
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_fwd", &covpool_fwd_cpu);
  m.impl("covpool_bwd", &covpool_bwd_cpu);
}

}  // namespace srops
