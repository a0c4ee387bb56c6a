// A minimal stand-in for the CUDA execution model, enough to compile srops's kernel headers with a host
// compiler (tests/cuda/test_kernels_compile.py): the built-in index variables, barriers and dynamic shared
// memory that common/cuda_compat.h expects when SROPS_CUDA_EMULATION is defined.
#pragma once

#include <cmath>
#include <cstdint>

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local uint3 threadIdx, blockIdx, blockDim{1, 1, 1}, gridDim{1, 1, 1};
inline void __syncthreads() {}
inline unsigned char* srops_dynamic_shared() {
  static unsigned char storage[1 << 18];
  return storage;
}
using std::sqrt;
