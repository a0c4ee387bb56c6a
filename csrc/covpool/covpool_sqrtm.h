// Fused covariance pooling + Newton–Schulz matrix square root (iSQRT-COV), docs/ops.md §A.
//
//   covpool_sqrtm_fwd(x [B, C, M], iterations N, eps, row_mean)
//     -> out    [B, C, C] (or [B, C] with row_mean: mean over rows i of the root)
//        mean   [B, C]                      row means μ of x
//        a      [B, C, C]                   A = Σ / t, t = tr Σ + eps (eps >= 0; where t = 0, A = 0)
//        states [B, 3(N-1), C, C]           Y_k, Z_k, W_k = Z_k Y_k for k = 1..N-1
//        trace  [B]                         t
//   Σ = (X − μ1ᵀ)(X − μ1ᵀ)ᵀ / M, out = √t · Y_N (zero where t = 0, with a zero gradient).
//   Outputs are float64 for float64 x, float32 otherwise (float16/bfloat16 x are read directly on CUDA).
//
//   covpool_sqrtm_bwd(grad, x, mean, a, states, trace, out, row_mean) -> dx [B, C, M] (dtype of x)
//     The analytic chain of docs/ops.md §A through the iterations, then dx = (dΣ + dΣᵀ)(X − μ1ᵀ)/M.
//     CPU and the CUDA at::bmm path (sqrtm_bmm.cpp): the reverse mode of the forward's own products.
//     CUDA per-sample kernel: grad is symmetrised first (the map G -> dΣ is linear and commutes with
//     transposition when Y, Z, W are symmetric and commuting, and only dΣ + dΣᵀ is used), so every
//     intermediate gradient is symmetric and each "X·S + S·X" pair costs one product.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace srops {

using SqrtmFwdResult = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

SqrtmFwdResult covpool_sqrtm_fwd_cpu(const at::Tensor& x, int64_t iterations, double eps, bool row_mean);
at::Tensor covpool_sqrtm_bwd_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mean,
                                 const at::Tensor& a, const at::Tensor& states, const at::Tensor& trace,
                                 const at::Tensor& out, bool row_mean);

// The CPU building blocks, shared with plain covariance pooling (covpool_cpu.cpp); x [B, C, M] contiguous,
// float32 or float64, on the CPU; the row means [B, C] are summed in double (a constant row centres to
// exactly zero). x is centred in cache-sized chunks (by sample, or by column chunk across a small batch) that
// ATen's GEMM reads at once.
// centred_gram_cpu: Σ = (X − μ1ᵀ)(X − μ1ᵀ)ᵀ / M [B, C, C], exactly symmetric, and the means into mean.
// centred_product_cpu: dx = gx (X − μ1ᵀ) [B, C, M] for gx [B, C, C].
at::Tensor row_means_cpu(const at::Tensor& x);
at::Tensor centred_gram_cpu(const at::Tensor& x, at::Tensor& mean);
at::Tensor centred_product_cpu(const at::Tensor& gx, const at::Tensor& x, const at::Tensor& mean);

// A = Σ / t [B, C, C] for t [B]; a sample with t = 0 (a constant x with eps = 0, so Σ = 0) is divided by 1
// instead, so its A, iterates and result are exactly zero rather than 0/0 (sqrtm_bmm.cpp, any device).
at::Tensor normalise_by_trace(const at::Tensor& sigma, const at::Tensor& trace);

// Batched-matmul path (sqrtm_bmm.cpp), any device: the iterations from A [B, C, C] and t [B]
// (filling out and states), and the backward chain to gx = (dΣ + dΣᵀ)/M [B, C, C] (zero where t = 0).
void sqrtm_forward_bmm(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                       at::Tensor& states);
at::Tensor sqrtm_backward_bmm(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& a,
                              const at::Tensor& states, const at::Tensor& trace, int64_t M, bool row_mean);
// gx [B, C, C] zeroed, in place, for the samples with t = 0 (whose chain divides 0 by 0).
void zero_where_trace_zero(at::Tensor& gx, const at::Tensor& trace);

// Checks shared by the CPU and CUDA entry points (covpool_sqrtm_checks.cpp).
void check_sqrtm_fwd_args(const at::Tensor& x, int64_t iterations, double eps, at::DeviceType device);
void check_sqrtm_bwd_args(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& a,
                          const at::Tensor& states, const at::Tensor& trace, const at::Tensor& out, bool row_mean,
                          at::DeviceType device);

}  // namespace srops
