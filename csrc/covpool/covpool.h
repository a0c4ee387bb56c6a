// Covariance pooling (iSQRT-COV's Covpool) by the centred formula.
//   forward : x [B, C, M] -> sigma [B, C, C],  sigma = (X - mu 1^T)(X - mu 1^T)^T / M
//   backward: grad [B, C, C], x [B, C, M] -> dx [B, C, M] = (G + G^T)(X - mu 1^T) / M
// The M x M centring matrix of the original code is never formed.
#pragma once

#include <ATen/ATen.h>

namespace srops {

at::Tensor covpool_fwd_cpu(const at::Tensor& x);
at::Tensor covpool_bwd_cpu(const at::Tensor& grad, const at::Tensor& x);

}  // namespace srops
