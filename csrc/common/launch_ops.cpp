// The launch-configuration functions as ops of their own namespace, srops_launch (catch-all kernels),
// with the device-agnostic GEMM step of the CUDA covariance ops (gram_of_chunks), so that every
// configuration the CUDA launchers can choose is unit-tested on CPU for any device description
// (tests/cuda/test_launch_config.py) and recorded by the device check.
#include <torch/library.h>

#include <string>
#include <tuple>
#include <vector>

#include "cbam/cbam.h"
#include "cbam/cbam_launch.h"
#include "covpool/centred_gemm.h"
#include "covpool/covpool_sqrtm_launch.h"

namespace srops {
namespace {

std::tuple<std::string, int64_t> covpool_sqrtm_plan_op(int64_t C, int64_t elem_size, int64_t mats,
                                                       int64_t static_smem, int64_t sms, int64_t smem_optin) {
  const SqrtmPlan p = sqrtm_plan(C, elem_size, static_cast<int>(mats), static_smem, {sms, smem_optin});
  return {sqrtm_path_name(p.path), p.dynamic_smem};
}

std::tuple<int64_t, int64_t> gram_split_op(int64_t B, int64_t C, int64_t M, int64_t sms) {
  const GramSplit s = gram_split(B, C, M, {sms, 0});
  return {s.splits, s.split_len};
}

std::tuple<int64_t, int64_t> cov_grid_op(int64_t rows, int64_t cols) {
  const PositionGrid g = position_grid(rows, cols, kCovThreads);
  return {g.x, g.y};
}

int64_t channel_pool_parts_op(int64_t rows, int64_t N, int64_t sms) { return channel_pool_parts(rows, N, {sms, 0}); }

std::tuple<int64_t, int64_t> position_grid_op(int64_t rows, int64_t N) {
  const PositionGrid g = position_grid(rows, N, kCbamThreads);
  return {g.x, g.y};
}

std::tuple<int64_t, int64_t, bool> cbam_vector_plan_op(int64_t N, int64_t elem_size, std::vector<int64_t> addresses) {
  bool aligned = true;
  for (const int64_t a : addresses) aligned = aligned && vec_aligned({static_cast<uintptr_t>(a)});
  const VectorPlan p = cbam_vector_plan(N, elem_size, aligned);
  return {p.width, p.groups, p.aligned};
}

bool index_range_checked_op(const std::string& device) {
  return cbam_index_range_checked(device == "cuda" ? at::kCUDA : at::kCPU);
}

}  // namespace

TORCH_LIBRARY(srops_launch, m) {
  m.def("covpool_sqrtm_plan(int C, int elem_size, int mats, int static_smem, int sms, int smem_optin) -> (str, int)",
        &covpool_sqrtm_plan_op);
  m.def("gram_split(int B, int C, int M, int sms) -> (int, int)", &gram_split_op);
  m.def("cov_grid(int rows, int cols) -> (int, int)", &cov_grid_op);
  m.def("gram_of_chunks(Tensor chunks, int M) -> Tensor", &gram_of_chunks);
  m.def("cbam_channel_pool_parts(int rows, int N, int sms) -> int", &channel_pool_parts_op);
  m.def("cbam_position_grid(int rows, int N) -> (int, int)", &position_grid_op);
  m.def("cbam_grid_stride_blocks(int n) -> int", &grid_stride_blocks);
  m.def("cbam_vector_plan(int N, int elem_size, int[] addresses) -> (int, int, bool)", &cbam_vector_plan_op);
  m.def("cbam_index_range_checked(str device) -> bool", &index_range_checked_op);
  m.def("constants() -> (int, int, int, int)", [] {
    return std::make_tuple(kMaxPerSampleC, int64_t(kSqrtmFwdMats), int64_t(kSqrtmBwdMats), int64_t(kCovThreads));
  });
}

}  // namespace srops
