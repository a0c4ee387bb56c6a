// CUDA entry points of covpool and covpool_sqrtm (defined in covpool_sqrtm_cuda.cu and sqrtm_smem_cuda.cu,
// registered in covpool_sqrtm_cuda_register.cpp). Only declared in CUDA builds.
#pragma once

#ifdef SROPS_WITH_CUDA
#include <ATen/ATen.h>

#include "covpool/covpool_sqrtm.h"

namespace srops {

SqrtmFwdResult covpool_sqrtm_fwd_cuda(const at::Tensor& x, int64_t iterations, double eps, bool row_mean);
at::Tensor covpool_sqrtm_bwd_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mean,
                                  const at::Tensor& a, const at::Tensor& states, const at::Tensor& trace,
                                  const at::Tensor& out, bool row_mean);
at::Tensor covpool_fwd_cuda(const at::Tensor& x);
at::Tensor covpool_bwd_cuda(const at::Tensor& grad, const at::Tensor& x);

// Per-sample Newton–Schulz iterations (sqrtm_smem_cuda.cu) in shared memory or global scratch, as
// sqrtm_plan decides; false when the plan is the at::bmm path (the caller then runs sqrtm_*_bmm).
bool sqrtm_forward_smem(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                        at::Tensor& states);
bool sqrtm_backward_smem(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& a, const at::Tensor& states,
                         const at::Tensor& trace, int64_t M, bool row_mean, at::Tensor& gx);

}  // namespace srops
#endif  // SROPS_WITH_CUDA
