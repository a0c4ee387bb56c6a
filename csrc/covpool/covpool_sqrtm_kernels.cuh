// Kernels of srops::covpool_fwd/bwd and of covpool_sqrtm's covariance and dx steps, on raw pointers
// (launchers: covpool_sqrtm_cuda.cu; launch configuration: covpool_sqrtm_launch.h). scalar_t is the
// input type (float16, bfloat16, float32, float64), acc_t the accumulation type (float32 or float64).
// The products themselves (the Gram matrix Σ = Xc Xcᵀ/M and dx = gx·Xc) are GEMMs on the centred copy
// Xc = X − μ1ᵀ these kernels write (cuBLAS through at::bmm, centred_gemm.h).
#pragma once

#include <cstdint>

#include "common/cuda_compat.h"
#include "covpool/covpool_sqrtm_launch.h"

namespace srops {
namespace covpool_kernels {

// mean[row] = sum_m x[row, m] / M, one block of kCovThreads per row.
template <typename scalar_t, typename acc_t>
SROPS_GLOBAL void row_mean_kernel(const scalar_t* __restrict__ x, acc_t* __restrict__ mean, int64_t M) {
  SROPS_SHARED acc_t red[kCovThreads];
  const int64_t row = blockIdx.x;
  const scalar_t* xr = x + row * M;
  acc_t s = 0;
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) s += static_cast<acc_t>(xr[m]);
  red[threadIdx.x] = s;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) mean[row] = red[0] / static_cast<acc_t>(M);
}

// out[((b·S + s)·C + c)·L + l] = x[b, c, s·L + l] − mean[b, c] where s·L + l < M, else 0: x centred, in S
// column chunks of L per row (the split-K operand of the Gram GEMMs; S = 1 and L = M give plain X − μ1ᵀ).
// rows = B·S·C; grid: position_grid(rows, L, kCovThreads), rows over y and columns over x.
template <typename scalar_t, typename acc_t>
SROPS_GLOBAL void centre_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ mean,
                                acc_t* __restrict__ out, int64_t rows, int64_t C, int64_t M, int64_t S, int64_t L) {
  SROPS_FOR_ROWS(r, rows) {
    const int64_t c = r % C, bs = r / C, s = bs % S, b = bs / S;  // once per row, not per element
    const int64_t row = b * C + c, begin = s * L;
    const int64_t len = M - begin < L ? M - begin : L;
    const scalar_t* xr = x + row * M + begin;
    const acc_t mu = mean[row];
    acc_t* o = out + r * L;
    SROPS_FOR_POSITIONS(l, L) o[l] = l < len ? static_cast<acc_t>(xr[l]) - mu : acc_t(0);
  }
}

}  // namespace covpool_kernels
}  // namespace srops
