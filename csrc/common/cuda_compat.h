// What the srops kernel headers (csrc/<op>/*_kernels.cuh) need from CUDA, in one place: function
// qualifiers, dynamic shared memory, and the block-level primitives they use. Under nvcc these are the
// CUDA keywords; a CPU implementation of the CUDA execution model (a tester's emulator) defines
// SROPS_CUDA_EMULATION and provides threadIdx/blockIdx/blockDim/gridDim, __syncthreads and
// srops_dynamic_shared() itself (tests/cuda/emulation.h is one), and the kernel bodies compile unchanged.
// Kernels take raw pointers and plain integers only: no ATen, no streams, no device properties (those
// belong to the launchers, csrc/<op>/*_cuda.cu).
#pragma once

#if defined(__CUDACC__)
#define SROPS_GLOBAL __global__
#define SROPS_DEVICE __device__ __forceinline__
#define SROPS_HOST_DEVICE __host__ __device__ __forceinline__
#define SROPS_SHARED __shared__
#define SROPS_LAUNCH_BOUNDS(threads) __launch_bounds__(threads)
// `extern __shared__` storage of a kernel's dynamic shared memory, as `type* name`.
#define SROPS_DYNAMIC_SHARED(type, name)        \
  extern __shared__ unsigned char name##_raw[]; \
  type* name = reinterpret_cast<type*>(name##_raw)
#elif defined(SROPS_CUDA_EMULATION)
// The emulator supplies threadIdx, blockIdx, blockDim, gridDim, __syncthreads() and
// srops_dynamic_shared() (the current block's dynamic shared memory).
#define SROPS_GLOBAL
#define SROPS_DEVICE inline
#define SROPS_HOST_DEVICE inline
#define SROPS_SHARED static  // blocks run one after another: the running block's threads share it
#define SROPS_LAUNCH_BOUNDS(threads)
#define SROPS_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(srops_dynamic_shared())
#else
#error "cuda_compat.h: include from nvcc-compiled sources, or define SROPS_CUDA_EMULATION"
#endif

// Loops of a 2-D grid (position_grid, common/launch.h): rows (or batch items) over y, positions over x.
#define SROPS_FOR_ROWS(r, rows) for (int64_t r = blockIdx.y; r < (rows); r += gridDim.y)
#define SROPS_FOR_POSITIONS(n, N) \
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < (N); n += int64_t(gridDim.x) * blockDim.x)
