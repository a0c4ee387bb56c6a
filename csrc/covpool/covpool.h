// Covariance pooling (iSQRT-COV's Covpool) by the centred formula.
//   forward : x [B, C, M] -> sigma [B, C, C],  sigma = (X - mu 1^T)(X - mu 1^T)^T / M
//   backward: grad [B, C, C], x [B, C, M] -> dx [B, C, M] = (G + G^T)(X - mu 1^T) / M
// The M x M centring matrix of the original code is never formed.
#pragma once

#include <ATen/ATen.h>

#include "common/checks.h"

namespace srops {

// Argument checks shared by the CPU and CUDA entry points: x [B, C, M] float32/float64 on `device`,
// non-empty; grad [B, C, C] like x.
inline void check_covpool_x(const char* op, const at::Tensor& x, at::DeviceType device) {
  check_dim(op, "x", x, 3, "[B, C, M]");
  check_float_or_double(op, "x", x);
  check_device_type(op, "x", x, device);
  check_nonempty(op, "x", x);
}

inline void check_covpool_grad(const char* op, const at::Tensor& grad, const at::Tensor& x, at::DeviceType device) {
  check_same_dtype(op, "grad", grad, x);
  check_device_type(op, "grad", grad, device);
  check_shape(op, "grad", grad, {x.size(0), x.size(1), x.size(1)});
}

at::Tensor covpool_fwd_cpu(const at::Tensor& x);
at::Tensor covpool_bwd_cpu(const at::Tensor& grad, const at::Tensor& x);

}  // namespace srops
