// The GEMMs of the CUDA covariance ops, on ATen (cuBLAS for CUDA tensors) and device-agnostic, so that
// CPU tensors test them (tests/cuda/test_launch_config.py through srops_launch::gram_of_chunks).
#pragma once

#include <ATen/ATen.h>

namespace srops {

// Σ [B, C, C] = (1/M) Σ_s chunks[:, s] chunks[:, s]ᵀ from the centred x in split-K chunks [B, S, C, L]
// (centre_kernel's layout, zero-padded past M): one batched GEMM over (b, s), the S products summed in
// order, the upper triangle mirrored so that Σ is exactly symmetric. float32 chunks follow PyTorch's
// float32 matmul precision (TF32 tensor cores only where the user allows them, as for torch.bmm).
at::Tensor gram_of_chunks(const at::Tensor& chunks, int64_t M);

}  // namespace srops
