// The launch configuration of the CUDA covariance ops (covpool, covpool_sqrtm) as ops of the srops_launch
// namespace (catch-all kernels), with their device-agnostic GEMM step (gram_of_chunks), so that every
// configuration the CUDA launchers can choose is unit-tested on CPU for any device description
// (tests/cuda/test_launch_config.py) and recorded by the device check. srops_launch is defined in
// fragments only, one per op folder (csrc/<op>/<op>_launch_ops.cpp); none of them owns the namespace.
#include <torch/library.h>

#include <string>
#include <tuple>

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

}  // namespace

TORCH_LIBRARY_FRAGMENT(srops_launch, m) {
  m.def("covpool_sqrtm_plan(int C, int elem_size, int mats, int static_smem, int sms, int smem_optin) -> (str, int)",
        &covpool_sqrtm_plan_op);
  m.def("gram_split(int B, int C, int M, int sms) -> (int, int)", &gram_split_op);
  m.def("cov_grid(int rows, int cols) -> (int, int)", &cov_grid_op);
  m.def("gram_of_chunks(Tensor chunks, int M) -> Tensor", &gram_of_chunks);
  m.def("constants() -> (int, int, int, int)", [] {
    return std::make_tuple(kMaxPerSampleC, int64_t(kSqrtmFwdMats), int64_t(kSqrtmBwdMats), int64_t(kCovThreads));
  });
}

}  // namespace srops
