// CUDA registrations of the fused CBAM ops (CUDA builds only).
#ifdef SROPS_WITH_CUDA
#include <torch/library.h>

#include "cbam/cbam_cuda.h"

namespace srops {

TORCH_LIBRARY_IMPL(srops, CUDA, m) {
  m.impl("cbam_channel_pool", &cbam_channel_pool_cuda);
  m.impl("cbam_channel_pool_backward", &cbam_channel_pool_backward_cuda);
  m.impl("cbam_spatial_pool", &cbam_spatial_pool_cuda);
  m.impl("cbam_spatial_pool_backward", &cbam_spatial_pool_backward_cuda);
  m.impl("cbam_apply", &cbam_apply_cuda);
  m.impl("cbam_apply_backward", &cbam_apply_backward_cuda);
  m.impl("cbam_input_backward", &cbam_input_backward_cuda);
}

}  // namespace srops
#endif  // SROPS_WITH_CUDA
