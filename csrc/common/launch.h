// Launch configuration inputs shared by every op: a plain description of the device, so that the host
// functions choosing grids, splits and shared memory (csrc/<op>/<op>_launch.{h,cpp}) are pure functions,
// compiled into the CPU build and unit-tested there for any GPU (tests/cuda/test_launch_config.py).
// On a GPU the launchers fill it through current_device_desc() (common/cuda_device.cuh), the one place
// that reads device properties.
#pragma once

#include <algorithm>
#include <cstdint>

namespace srops {

struct DeviceDesc {
  int64_t sms;         // multiprocessors
  int64_t smem_optin;  // bytes of shared memory one block may use after opting in (static + dynamic)
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kMaxGridYZ = 65535;  // the largest y or z grid dimension

// 2-D grid of the grid-stride kernels over (row, position): x blocks of `threads` positions over N (at most
// 2^20), y over `rows` (at most kMaxGridYZ); SROPS_FOR_ROWS / SROPS_FOR_POSITIONS (common/cuda_compat.h)
// stride over the rest. Each thread finds its row and position from blockIdx.y and blockIdx.x directly: no
// 64-bit division per element.
struct PositionGrid {
  int64_t x, y;
};
inline PositionGrid position_grid(int64_t rows, int64_t N, int64_t threads) {
  return {std::clamp<int64_t>(ceil_div(N, threads), 1, int64_t(1) << 20), std::clamp<int64_t>(rows, 1, kMaxGridYZ)};
}

}  // namespace srops
