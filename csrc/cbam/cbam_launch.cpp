#include "cbam/cbam_launch.h"

#include <algorithm>

namespace srops {

int64_t grid_stride_blocks(int64_t n) {
  return std::max<int64_t>(1, std::min<int64_t>(ceil_div(n, kCbamThreads), int64_t(1) << 20));
}

int64_t channel_pool_parts(int64_t rows, int64_t N, const DeviceDesc& dev) {
  return std::max<int64_t>(1, std::min<int64_t>({ceil_div(4 * dev.sms, rows), N / (4 * kCbamThreads), kMaxGridYZ}));
}

PositionGrid position_grid(int64_t rows, int64_t N) {
  return {std::clamp<int64_t>(ceil_div(N, kCbamThreads), 1, int64_t(1) << 20), std::clamp<int64_t>(rows, 1, kMaxGridYZ)};
}

}  // namespace srops
