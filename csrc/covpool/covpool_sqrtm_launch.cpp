#include "covpool/covpool_sqrtm_launch.h"

#include <algorithm>

namespace srops {

GramSplit gram_split(int64_t B, int64_t C, int64_t M, const DeviceDesc& dev) {
  const int64_t tiles = ceil_div(C, kGemmTile) * ceil_div(C, kGemmTile);
  const int64_t cap = std::max<int64_t>(M / kGramMinSplit, 1);
  const int64_t S = std::clamp(ceil_div(2 * dev.sms, B * tiles), int64_t(1), cap);
  const int64_t L = ceil_div(ceil_div(M, S), 4) * 4;
  return {ceil_div(M, L), L};  // no chunk left empty by rounding L up
}

const char* sqrtm_path_name(SqrtmPath p) {
  switch (p) {
    case SqrtmPath::Shared: return "shared";
    case SqrtmPath::Scratch: return "scratch";
    default: return "bmm";
  }
}

SqrtmPlan sqrtm_plan(int64_t C, int64_t elem_size, int mats, int64_t static_smem, const DeviceDesc& dev) {
  if (C > kMaxPerSampleC) return {SqrtmPath::Bmm, 0};
  const int64_t bytes = static_cast<int64_t>(mats) * C * C * elem_size;
  if (bytes + static_smem <= dev.smem_optin) return {SqrtmPath::Shared, bytes};
  return {SqrtmPath::Scratch, 0};
}

}  // namespace srops
