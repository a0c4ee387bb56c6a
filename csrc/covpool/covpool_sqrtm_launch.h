// Launch configuration of the covpool / covpool_sqrtm CUDA kernels: plain host functions of the problem
// size and a DeviceDesc (common/launch.h), compiled into every build and unit-tested on CPU.
#pragma once

#include <cstdint>

#include "common/launch.h"

namespace srops {

constexpr int kCovThreads = 256;  // threads of every covpool kernel
constexpr int64_t kMaxPerSampleC = 128;  // above this C the Newton–Schulz iterations run on at::bmm
constexpr int kSqrtmFwdMats = 4;  // C×C working matrices of the per-sample forward kernel
constexpr int kSqrtmBwdMats = 6;  // ... and of the backward kernel
constexpr int64_t kGramMinSplit = 1024;  // columns of the shortest split-K chunk of the Gram GEMMs
constexpr int64_t kGemmTile = 128;       // output tile side assumed of a cuBLAS GEMM when sizing the split

// Split-K plan of the centred Gram Σ = (X − μ1ᵀ)(X − μ1ᵀ)ᵀ / M by batched GEMM (cuBLAS through at::bmm):
// M is cut into `splits` chunks of `split_len` columns (a multiple of 4, so that every chunk of the
// float32 centred copy starts 16-byte aligned; the last chunk is zero-padded), one C×C GEMM per (sample,
// chunk), and the chunks' products are summed in a fixed order (deterministic). Enough chunks for about
// two output tiles per SM, each chunk at least kGramMinSplit columns long unless M is shorter.
struct GramSplit {
  int64_t splits;     // S
  int64_t split_len;  // L: S·L >= M > (S − 1)·L
};
GramSplit gram_split(int64_t B, int64_t C, int64_t M, const DeviceDesc& dev);

// Where the per-sample Newton–Schulz kernels keep their `mats` C×C working matrices.
enum class SqrtmPath { Shared, Scratch, Bmm };
const char* sqrtm_path_name(SqrtmPath p);

struct SqrtmPlan {
  SqrtmPath path;
  int64_t dynamic_smem;  // bytes of dynamic shared memory to request (0 unless Shared)
};
// Shared when mats·C²·elem bytes plus the kernel's static shared memory fit the opt-in limit, else
// Scratch (a per-sample global buffer) up to kMaxPerSampleC, else Bmm.
SqrtmPlan sqrtm_plan(int64_t C, int64_t elem_size, int mats, int64_t static_smem, const DeviceDesc& dev);

}  // namespace srops
