// x86 instruction-set level that srops' C++ CPU kernels may use, and which path each kernel family takes.
#pragma once

#include <string>

namespace srops {

// Ordered levels: a kernel takes its AVX2 path at avx2 or above, its AVX-512 path at avx512.
enum class CpuIsa : int { base = 0, avx2 = 1, avx512 = 2 };

// The CPU's level (x86-64 with GCC/Clang: AVX2; AVX-512 F + FMA), capped by the environment, read once:
//   SROPS_CPU_NO_AVX512=1 -> at most avx2;  SROPS_CPU_NO_AVX2=1 -> base;
//   ATEN_CPU_CAPABILITY=avx2 -> at most avx2;  ATEN_CPU_CAPABILITY=default -> base (as PyTorch's kernels).
// Other architectures: base.
CpuIsa cpu_isa();

// The paths in use, e.g. "cbam=avx2 covpool=avx512 nonlocal_attention=avx512" (defined beside the kernels).
const char* cbam_cpu_path();
const char* covpool_cpu_path();
const char* nonlocal_cpu_path();
std::string cpu_kernel_paths();

}  // namespace srops
