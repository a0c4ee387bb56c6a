// Every srops CUDA kernel template instantiated by a host compiler through tests/cuda/emulation.h: the
// kernel headers depend on common/cuda_compat.h alone (no ATen, no CUDA runtime).
#define SROPS_CUDA_EMULATION 1
#include "tests/cuda/emulation.h"

#include "cbam/cbam_kernels.cuh"
#include "covpool/covpool_sqrtm_kernels.cuh"
#include "covpool/sqrtm_smem_kernels.cuh"

namespace ck = srops::cbam_kernels;
namespace cv = srops::covpool_kernels;
namespace sq = srops::sqrtm_kernels;

template <typename T, typename A>
void instantiate_cbam() {
  void* kernels[] = {
      reinterpret_cast<void*>(&ck::channel_pool_kernel<T, A>),
      reinterpret_cast<void*>(&ck::channel_pool_combine_kernel<T, A>),
      reinterpret_cast<void*>(&ck::channel_pool_backward_kernel<T, A>),
      reinterpret_cast<void*>(&ck::spatial_pool_kernel<T, A, true>),
      reinterpret_cast<void*>(&ck::spatial_pool_kernel<T, A, false>),
      reinterpret_cast<void*>(&ck::spatial_pool_backward_dx_kernel<T, A>),
      reinterpret_cast<void*>(&ck::spatial_pool_backward_dc_kernel<T, A>),
      reinterpret_cast<void*>(&ck::apply_kernel<T, A, true>),
      reinterpret_cast<void*>(&ck::apply_kernel<T, A, false>),
      reinterpret_cast<void*>(&ck::apply_backward_dx_kernel<T, A, true>),
      reinterpret_cast<void*>(&ck::apply_backward_dx_kernel<T, A, false>),
      reinterpret_cast<void*>(&ck::apply_backward_dc_kernel<T, A>),
      reinterpret_cast<void*>(&ck::input_backward_kernel<T, A, true>),
      reinterpret_cast<void*>(&ck::input_backward_kernel<T, A, false>),
  };
  (void)kernels;
}

template <typename T>
void instantiate_covpool() {
  void* kernels[] = {
      reinterpret_cast<void*>(&cv::row_mean_kernel<T, T>),    reinterpret_cast<void*>(&cv::centre_kernel<T, T>),
      reinterpret_cast<void*>(&sq::forward_kernel<T, true>),
      reinterpret_cast<void*>(&sq::forward_kernel<T, false>), reinterpret_cast<void*>(&sq::backward_kernel<T, true>),
      reinterpret_cast<void*>(&sq::backward_kernel<T, false>),
  };
  (void)kernels;
}

int main() {
  instantiate_cbam<float, float>();
  instantiate_cbam<double, double>();
  instantiate_covpool<float>();
  instantiate_covpool<double>();
  return 0;
}
