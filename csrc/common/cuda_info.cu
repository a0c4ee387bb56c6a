// Compiled by nvcc whenever the CUDA sources are built: proves the CUDA
// toolchain end to end and reports the runtime version it compiled against.
#include <cuda_runtime.h>

#include "info.h"

namespace srops {

int64_t cuda_compile_version_impl() { return static_cast<int64_t>(CUDART_VERSION); }

}  // namespace srops
