// The launch configuration of the CUDA CBAM ops as ops of the srops_launch namespace (catch-all kernels),
// so that every configuration the CUDA launchers can choose is unit-tested on CPU for any device
// description (tests/cuda/test_launch_config.py) and recorded by the device check. srops_launch is defined
// in fragments only, one per op folder (csrc/<op>/<op>_launch_ops.cpp); none of them owns the namespace.
#include <torch/library.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "cbam/cbam.h"
#include "cbam/cbam_launch.h"

namespace srops {
namespace {

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

TORCH_LIBRARY_FRAGMENT(srops_launch, m) {
  m.def("cbam_channel_pool_parts(int rows, int N, int sms) -> int", &channel_pool_parts_op);
  m.def("cbam_position_grid(int rows, int N) -> (int, int)", &position_grid_op);
  m.def("cbam_grid_stride_blocks(int n) -> int", &grid_stride_blocks);
  m.def("cbam_vector_plan(int N, int elem_size, int[] addresses) -> (int, int, bool)", &cbam_vector_plan_op);
  m.def("cbam_index_range_checked(str device) -> bool", &index_range_checked_op);
}

}  // namespace srops
