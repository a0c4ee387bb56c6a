// The one reader of CUDA device properties for srops launchers.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include "common/launch.h"

namespace srops {

// The current device as the launch-configuration functions see it.
inline DeviceDesc current_device_desc() {
  const cudaDeviceProp* p = at::cuda::getCurrentDeviceProperties();
  return {static_cast<int64_t>(p->multiProcessorCount), static_cast<int64_t>(p->sharedMemPerBlockOptin)};
}

}  // namespace srops
