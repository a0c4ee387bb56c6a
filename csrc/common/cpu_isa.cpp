// See cpu_isa.h.
#include "common/cpu_isa.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace srops {
namespace {

bool env_set(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

CpuIsa detect() {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return CpuIsa::avx512;
  if (__builtin_cpu_supports("avx2")) return CpuIsa::avx2;
#endif
  return CpuIsa::base;
}

CpuIsa capped() {
  int level = static_cast<int>(detect());
  auto cap = [&level](CpuIsa c) { level = std::min(level, static_cast<int>(c)); };
  if (env_set("SROPS_CPU_NO_AVX512")) cap(CpuIsa::avx2);
  if (env_set("SROPS_CPU_NO_AVX2")) cap(CpuIsa::base);
  if (const char* aten = std::getenv("ATEN_CPU_CAPABILITY")) {
    if (std::strcmp(aten, "avx2") == 0) cap(CpuIsa::avx2);
    if (std::strcmp(aten, "default") == 0) cap(CpuIsa::base);
  }
  return static_cast<CpuIsa>(level);
}

}  // namespace

CpuIsa cpu_isa() {
  static const CpuIsa level = capped();
  return level;
}

std::string cpu_kernel_paths() {
  return std::string("cbam=") + cbam_cpu_path() + " covpool=" + covpool_cpu_path() +
         " nonlocal_attention=" + nonlocal_cpu_path();
}

}  // namespace srops
