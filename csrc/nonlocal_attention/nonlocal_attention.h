// Flash-style non-local attention on the CPU: softmax(q kᵀ · scale) v without storing the N×M scores.
//
//   nonlocal_attention_fwd(q [B, N, d], k [B, M, d], v [B, M, dv], scale)
//       -> out [B, N, dv], lse [B, N]
//   nonlocal_attention_bwd(grad [B, N, dv], q, k, v, out, lse, scale) -> dq, dk, dv
//
// q, k, v, grad, out: float32 or float64, one dtype, any strides (copied into padded contiguous
// blocks); lse (the row's log-sum-exp of the scaled scores, what the backward recomputes the
// probabilities from) is in that dtype too. Forward: an online softmax over blocks of kBlockKeys
// keys, parallel over (batch, block of kQueryBlock queries). Backward (FlashAttention-2): the
// probabilities are recomputed per block from lse, Δ = rowsum(grad ∘ out); parallel over
// (batch, chunk of keys), each chunk writing its own dk, dv rows and its own partial dq, summed in
// chunk order afterwards: no atomics, and the result does not depend on the thread count.
// Non-finite input gives what the reference gives: a NaN (or a row of -inf scores) makes the
// row's output NaN.
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace srops {

std::tuple<at::Tensor, at::Tensor> nonlocal_attention_fwd_cpu(const at::Tensor& q, const at::Tensor& k,
                                                              const at::Tensor& v, double scale);

std::tuple<at::Tensor, at::Tensor, at::Tensor> nonlocal_attention_bwd_cpu(const at::Tensor& grad,
                                                                          const at::Tensor& q, const at::Tensor& k,
                                                                          const at::Tensor& v, const at::Tensor& out,
                                                                          const at::Tensor& lse, double scale);

}  // namespace srops
