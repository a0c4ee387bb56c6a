// A minimal stand-in for the CUDA execution model, enough to compile srops's kernel headers with a host
// compiler and run them on the CPU (tests/cuda/test_launch_config.py): the built-in index variables,
// __syncthreads() and dynamic shared memory that common/cuda_compat.h expects when SROPS_CUDA_EMULATION is
// defined. launch_blocks() runs a grid's blocks one after another, each block's threads as OS threads
// meeting at a std::barrier (so SROPS_SHARED `static` storage is the running block's shared memory).
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
inline thread_local uint3 threadIdx;
inline uint3 blockIdx, blockDim{1, 1, 1}, gridDim{1, 1, 1};
inline std::barrier<>* srops_block_barrier = nullptr;
inline void __syncthreads() {
  if (srops_block_barrier != nullptr) srops_block_barrier->arrive_and_wait();
}
inline unsigned char* srops_dynamic_shared() {
  alignas(16) static unsigned char storage[1 << 18];
  return storage;
}
using std::sqrt;

// Runs body() for every thread of every block of a (gx, gy) grid of `threads`-thread blocks.
template <typename F>
void launch_blocks(unsigned gx, unsigned gy, unsigned threads, F&& body) {
  gridDim = {gx, gy, 1};
  blockDim = {threads, 1, 1};
  for (unsigned y = 0; y < gy; ++y)
    for (unsigned x = 0; x < gx; ++x) {
      blockIdx = {x, y, 0};
      std::barrier<> bar(threads);
      srops_block_barrier = threads > 1 ? &bar : nullptr;
      std::vector<std::thread> pool;
      for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
          threadIdx = {t, 0, 0};
          body();
          if (threads > 1) bar.arrive_and_drop();  // a finished thread no longer holds the others back
        });
      for (auto& th : pool) th.join();
      srops_block_barrier = nullptr;
    }
}
