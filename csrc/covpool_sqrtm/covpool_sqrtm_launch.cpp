#include "covpool_sqrtm/covpool_sqrtm_launch.h"

#include <algorithm>

namespace srops {

GramSplit gram_split(int64_t B, int64_t C, int64_t M, const DeviceDesc& dev) {
  const int64_t nt = ceil_div(C, kCovTile);
  const int64_t upper_tiles = nt * (nt + 1) / 2;
  const int64_t cap = std::min<int64_t>(std::max<int64_t>(ceil_div(M, 256), 1), 65535);
  const int64_t S = std::clamp(ceil_div(4 * dev.sms, B * upper_tiles), int64_t(1), cap);
  return {nt, S, ceil_div(M, S)};
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
