// Launch configuration of the covpool / covpool_sqrtm CUDA kernels: plain host functions of the problem
// size and a DeviceDesc (common/launch.h), compiled into every build and unit-tested on CPU.
#pragma once

#include <cstdint>

#include "common/launch.h"

namespace srops {

constexpr int kCovTile = 32;      // output tile side of the Gram and dx kernels
constexpr int kCovThreads = 256;  // threads of every covpool kernel (16×16, 2×2 outputs each)
constexpr int64_t kMaxPerSampleC = 128;  // above this C the Newton–Schulz iterations run on at::bmm
constexpr int kSqrtmFwdMats = 4;  // C×C working matrices of the per-sample forward kernel
constexpr int kSqrtmBwdMats = 6;  // ... and of the backward kernel

// Grid of the centred Gram kernel: (tiles², splits, B) blocks; only tiles ti <= tj do work. M is split
// into `splits` parts of `split_len` columns, enough for about four blocks per SM, each part at least
// 256 columns, at most 65535 parts (a grid dimension).
struct GramSplit {
  int64_t tiles;      // ceil(C / kCovTile)
  int64_t splits;     // S
  int64_t split_len;  // ceil(M / S)
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
