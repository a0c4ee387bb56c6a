// CUDA registrations of the fused CBAM ops (CUDA builds only).
#ifdef SROPS_WITH_CUDA
#include <torch/library.h>

#include "cbam/cbam_cuda.h"

namespace srops {

TORCH_LIBRARY_IMPL(srops, CUDA, m) {
  m.impl("cbam_channel_pool_fwd", &cbam_channel_pool_fwd_cuda);
  m.impl("cbam_channel_pool_bwd", &cbam_channel_pool_bwd_cuda);
  m.impl("cbam_spatial_pool_fwd", &cbam_spatial_pool_fwd_cuda);
  m.impl("cbam_spatial_pool_bwd", &cbam_spatial_pool_bwd_cuda);
  m.impl("cbam_apply_fwd", &cbam_apply_fwd_cuda);
  m.impl("cbam_apply_bwd", &cbam_apply_bwd_cuda);
  m.impl("cbam_input_bwd", &cbam_input_bwd_cuda);
}

}  // namespace srops
#endif  // SROPS_WITH_CUDA
