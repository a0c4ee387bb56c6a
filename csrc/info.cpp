#include "info.h"

namespace srops {

bool compiled_with_cuda() {
#ifdef SROPS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int64_t cuda_compile_version() {
#ifdef SROPS_WITH_CUDA
  return cuda_compile_version_impl();
#else
  return 0;
#endif
}

}  // namespace srops
