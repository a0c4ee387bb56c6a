// Launch configuration of the fused CBAM CUDA kernels: plain host functions of the problem size and a
// DeviceDesc (common/launch.h), compiled into every build and unit-tested on CPU.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "common/launch.h"

namespace srops {

constexpr int kCbamThreads = 256;  // threads per block of every CBAM kernel (a power of two: tree reductions)

// Blocks of a grid-stride kernel over n items: enough to cover them, capped at 2^20 (the loop covers the rest).
int64_t grid_stride_blocks(int64_t n);

// Parts each (b, c) row of the channel pooling is split into: enough blocks for about four per SM when
// B*C is small, each part at least 4 elements per thread, at most 65535 (a grid dimension).
int64_t channel_pool_parts(int64_t rows, int64_t N, const DeviceDesc& dev);

// The kernels over (row or batch item, position) run on position_grid(rows, N, kCbamThreads) (common/launch.h).

// Vector access of the kernels over (b, position) and (row, position) (apply, apply_backward_dx,
// spatial_pool, input_backward): where `aligned` (N a multiple of 16 / elem_size
// and the tensors' addresses 16-byte aligned, vec_aligned), each thread handles V = 16 / elem_size
// consecutive positions (8 float16/bfloat16, 4 float32, 2 float64) with one 16-byte load or store per
// tensor and channel; otherwise V = 1, one element at a time.
constexpr int kCbamVecBytes = 16;
struct VectorPlan {
  int64_t width;   // V
  int64_t groups;  // N / V: the positions of the 2-D grid (position_grid(rows, groups, kCbamThreads))
  bool aligned;
};
VectorPlan cbam_vector_plan(int64_t N, int64_t elem_size, bool addresses_aligned);
// Every address (0 for an absent tensor) a multiple of kCbamVecBytes.
bool vec_aligned(std::initializer_list<uintptr_t> addresses);

}  // namespace srops
