// Launch configuration inputs shared by every op: a plain description of the device, so that the host
// functions choosing grids, splits and shared memory (csrc/<op>/<op>_launch.{h,cpp}) are pure functions,
// compiled into the CPU build and unit-tested there for any GPU (tests/cuda/test_launch_config.py).
// On a GPU the launchers fill it through current_device_desc() (common/cuda_device.cuh), the one place
// that reads device properties.
#pragma once

#include <cstdint>

namespace srops {

struct DeviceDesc {
  int64_t sms;         // multiprocessors
  int64_t smem_optin;  // bytes of shared memory one block may use after opting in (static + dynamic)
};

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace srops
