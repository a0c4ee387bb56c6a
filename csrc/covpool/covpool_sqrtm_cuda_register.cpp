// CUDA registrations of covpool and covpool_sqrtm (CUDA builds only).
#ifdef SROPS_WITH_CUDA
#include <torch/library.h>

#include "covpool/covpool_sqrtm_cuda.h"

namespace srops {

TORCH_LIBRARY_IMPL(srops, CUDA, m) {
  m.impl("covpool_sqrtm_fwd", &covpool_sqrtm_fwd_cuda);
  m.impl("covpool_sqrtm_bwd", &covpool_sqrtm_bwd_cuda);
  m.impl("covpool_fwd", &covpool_fwd_cuda);
  m.impl("covpool_bwd", &covpool_bwd_cuda);
}

}  // namespace srops
#endif  // SROPS_WITH_CUDA
