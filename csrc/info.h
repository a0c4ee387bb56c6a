// Build facts of the compiled extension.
#pragma once

#include <cstdint>
#include <string>

namespace srops {

bool compiled_with_cuda();
// CUDART_VERSION the CUDA sources were compiled against (e.g. 13000), or 0.
int64_t cuda_compile_version();

#ifdef SROPS_WITH_CUDA
int64_t cuda_compile_version_impl();  // defined in common/cuda_info.cu
#endif

}  // namespace srops
