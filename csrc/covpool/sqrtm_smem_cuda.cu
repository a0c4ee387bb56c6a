// Launchers of the per-sample Newton–Schulz kernels (sqrtm_smem_kernels.cuh). The path comes from
// sqrtm_plan (covpool_sqrtm_launch.h) with the kernel's real static shared memory; if the device still
// refuses the dynamic shared-memory opt-in, the launch falls back to the global-scratch kernel instead of
// failing. Above kMaxPerSampleC the caller takes the at::bmm path.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "common/cuda_device.cuh"
#include "covpool/covpool_sqrtm_cuda.h"
#include "covpool/sqrtm_smem_kernels.cuh"

namespace srops {
namespace {

template <typename K>
int64_t static_smem_of(K kernel) {
  cudaFuncAttributes attr;
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  return static_cast<int64_t>(attr.sharedSizeBytes);
}

// Raises the kernel's dynamic shared-memory limit to `bytes`; false (the error cleared) if refused.
template <typename K>
bool allow_smem(K kernel, int64_t bytes) {
  const cudaError_t err =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (err == cudaSuccess) return true;
  (void)cudaGetLastError();
  return false;
}

// The plan for `shared_kernel` at this C, downgraded to Scratch if the opt-in is refused.
template <typename T, typename K>
SqrtmPlan plan_for(K shared_kernel, int64_t C, int mats) {
  SqrtmPlan plan = sqrtm_plan(C, sizeof(T), mats, static_smem_of(shared_kernel), current_device_desc());
  if (plan.path == SqrtmPath::Shared && !allow_smem(shared_kernel, plan.dynamic_smem)) plan = {SqrtmPath::Scratch, 0};
  return plan;
}

// The launch choice of a per-sample kernel pair (its shared-memory and global-scratch instances), made
// once for the forward and the backward: the kernel to launch, its dynamic shared memory, and the
// [B, mats, C, C] scratch the Scratch path works in (empty, and a null pointer, on the Shared path).
template <typename T, typename K>
struct SmemLaunch {
  bool shared;
  K kernel;
  int64_t dynamic_smem;
  at::Tensor scratch;
  T* scratch_ptr() { return shared ? nullptr : scratch.data_ptr<T>(); }
};

template <typename T, typename K>
SmemLaunch<T, K> choose_launch(K shared_kernel, K scratch_kernel, const at::Tensor& a, int mats) {
  const int64_t B = a.size(0), C = a.size(1);
  const SqrtmPlan plan = plan_for<T>(shared_kernel, C, mats);
  const bool shared = plan.path == SqrtmPath::Shared;
  return {shared, shared ? shared_kernel : scratch_kernel, plan.dynamic_smem,
          at::empty(shared ? at::IntArrayRef{0} : at::IntArrayRef{B, mats, C, C}, a.options())};
}

}  // namespace

bool sqrtm_forward_smem(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                        at::Tensor& states) {
  const int64_t B = a.size(0), C = a.size(1);
  if (C > kMaxPerSampleC) return false;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "covpool_sqrtm_fwd_smem", [&] {
    auto launch = choose_launch<scalar_t>(sqrtm_kernels::forward_kernel<scalar_t, true>,
                                          sqrtm_kernels::forward_kernel<scalar_t, false>, a, kSqrtmFwdMats);
    launch.kernel<<<static_cast<unsigned>(B), kCovThreads, launch.dynamic_smem, stream>>>(
        a.data_ptr<scalar_t>(), trace.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), states.data_ptr<scalar_t>(),
        static_cast<int>(C), static_cast<int>(N), row_mean, launch.scratch_ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return true;
}

bool sqrtm_backward_smem(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& a, const at::Tensor& states,
                         const at::Tensor& trace, int64_t M, bool row_mean, at::Tensor& gx) {
  const int64_t B = a.size(0), C = a.size(1), N = states.size(1) / 3 + 1;
  if (C > kMaxPerSampleC) return false;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "covpool_sqrtm_bwd_smem", [&] {
    auto launch = choose_launch<scalar_t>(sqrtm_kernels::backward_kernel<scalar_t, true>,
                                          sqrtm_kernels::backward_kernel<scalar_t, false>, a, kSqrtmBwdMats);
    launch.kernel<<<static_cast<unsigned>(B), kCovThreads, launch.dynamic_smem, stream>>>(
        grad.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), states.data_ptr<scalar_t>(),
        trace.data_ptr<scalar_t>(), M, static_cast<int>(C), static_cast<int>(N), row_mean, gx.data_ptr<scalar_t>(),
        launch.scratch_ptr());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return true;
}

}  // namespace srops
