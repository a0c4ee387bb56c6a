#include "cbam/cbam_launch.h"

#include <algorithm>

namespace srops {

int64_t grid_stride_blocks(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, kCbamThreads), int64_t(1) << 20));
}

int64_t channel_pool_parts(int64_t rows, int64_t N, const DeviceDesc& dev) {
  return std::max<int64_t>(1, std::min<int64_t>({ceil_div(4 * dev.sms, rows), N / (4 * kCbamThreads), kMaxGridYZ}));
}

VectorPlan cbam_vector_plan(int64_t N, int64_t elem_size, bool addresses_aligned) {
  const int64_t packed = std::max<int64_t>(kCbamVecBytes / elem_size, 1);
  const bool aligned = addresses_aligned && N % packed == 0;
  const int64_t V = aligned ? packed : 1;
  return {V, ceil_div(N, V), aligned};
}

bool vec_aligned(std::initializer_list<uintptr_t> addresses) {
  return std::all_of(addresses.begin(), addresses.end(), [](uintptr_t a) { return a % kCbamVecBytes == 0; });
}


}  // namespace srops
