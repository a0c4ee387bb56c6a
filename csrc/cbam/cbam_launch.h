// Launch configuration of the fused CBAM CUDA kernels: plain host functions of the problem size and a
// DeviceDesc (common/launch.h), compiled into every build and unit-tested on CPU.
#pragma once

#include <cstdint>

#include "common/launch.h"

namespace srops {

constexpr int kCbamThreads = 256;  // threads per block of every CBAM kernel (a power of two: tree reductions)
constexpr int64_t kMaxGridYZ = 65535;

// Blocks of a grid-stride kernel over n items: enough to cover them, capped at 2^20 (the loop covers the rest).
int64_t grid_stride_blocks(int64_t n);

// Parts each (b, c) row of the channel pooling is split into: enough blocks for about four per SM when
// B*C is small, each part at least 4 elements per thread, at most 65535 (a grid dimension).
int64_t channel_pool_parts(int64_t rows, int64_t N, const DeviceDesc& dev);

// 2-D grid of the kernels over (row or batch item, position): x blocks of kCbamThreads positions over N
// (at most 2^20; the kernels stride over the rest), y over `rows` (at most 65535, likewise). Each thread
// then finds its row and position from blockIdx.y and blockIdx.x directly: no 64-bit division per element.
struct PositionGrid {
  int64_t x, y;
};
PositionGrid position_grid(int64_t rows, int64_t N);

}  // namespace srops
