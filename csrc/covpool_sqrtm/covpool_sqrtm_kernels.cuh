// Kernels of srops::covpool_fwd/bwd and of covpool_sqrtm's covariance and dx steps, on raw pointers
// (launchers: covpool_sqrtm_cuda.cu; launch configuration: covpool_sqrtm_launch.h). scalar_t is the
// input type (float16, bfloat16, float32, float64), acc_t the accumulation type (float32 or float64).
#pragma once

#include <cstdint>

#include "common/cuda_compat.h"
#include "covpool_sqrtm/covpool_sqrtm_launch.h"

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

// part[b, s, i, j] = sum over m in split s of (x_bi,m − μ_bi)(x_bj,m − μ_bj), tiles (ti <= tj) only.
// grid: (ntiles², S, B).
template <typename scalar_t, typename acc_t>
SROPS_GLOBAL void gram_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ mean, acc_t* __restrict__ part,
                            int64_t C, int64_t M, int64_t split_len) {
  SROPS_SHARED acc_t xi[kCovTile][kCovTile + 1];
  SROPS_SHARED acc_t xj[kCovTile][kCovTile + 1];
  const int64_t nt = (C + kCovTile - 1) / kCovTile;
  const int64_t ti = blockIdx.x / nt, tj = blockIdx.x % nt;
  if (ti > tj) return;
  const int64_t b = blockIdx.z, s = blockIdx.y, S = gridDim.y;
  const int64_t i0 = ti * kCovTile, j0 = tj * kCovTile;
  const int64_t m_begin = s * split_len, m_end = (m_begin + split_len < M) ? m_begin + split_len : M;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  acc_t acc[2][2] = {{0, 0}, {0, 0}};
  for (int64_t m0 = m_begin; m0 < m_end; m0 += kCovTile) {
    for (int e = threadIdx.x; e < kCovTile * kCovTile; e += kCovThreads) {
      const int r = e / kCovTile, c = e % kCovTile;
      const int64_t m = m0 + c;
      const int64_t gi = i0 + r, gj = j0 + r;
      xi[r][c] = (gi < C && m < m_end) ? static_cast<acc_t>(x[(b * C + gi) * M + m]) - mean[b * C + gi] : acc_t(0);
      xj[r][c] = (gj < C && m < m_end) ? static_cast<acc_t>(x[(b * C + gj) * M + m]) - mean[b * C + gj] : acc_t(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kCovTile; ++k) {
      const acc_t a0 = xi[ty][k], a1 = xi[ty + 16][k];
      const acc_t b0 = xj[tx][k], b1 = xj[tx + 16][k];
      acc[0][0] += a0 * b0;
      acc[0][1] += a0 * b1;
      acc[1][0] += a1 * b0;
      acc[1][1] += a1 * b1;
    }
    __syncthreads();
  }
  acc_t* out = part + (b * S + s) * C * C;
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      const int64_t i = i0 + ty + 16 * r, j = j0 + tx + 16 * c;
      if (i < C && j < C) out[i * C + j] = acc[r][c];
    }
}

// dx[b, i, m] = sum_j gx[b, i, j] x[b, j, m] − v[b, i]. grid: (ceil(M/32), ceil(C/32), B).
template <typename scalar_t, typename acc_t>
SROPS_GLOBAL void dx_kernel(const scalar_t* __restrict__ x, const acc_t* __restrict__ gx, const acc_t* __restrict__ v,
                          scalar_t* __restrict__ dx, int64_t C, int64_t M) {
  SROPS_SHARED acc_t gs[kCovTile][kCovTile + 1];
  SROPS_SHARED acc_t xs[kCovTile][kCovTile + 1];
  const int64_t b = blockIdx.z, i0 = static_cast<int64_t>(blockIdx.y) * kCovTile,
                m0 = static_cast<int64_t>(blockIdx.x) * kCovTile;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  acc_t acc[2][2] = {{0, 0}, {0, 0}};
  for (int64_t j0 = 0; j0 < C; j0 += kCovTile) {
    for (int e = threadIdx.x; e < kCovTile * kCovTile; e += kCovThreads) {
      const int r = e / kCovTile, c = e % kCovTile;
      const int64_t gi = i0 + r, gj = j0 + c;
      gs[r][c] = (gi < C && gj < C) ? gx[(b * C + gi) * C + gj] : acc_t(0);
      const int64_t xj = j0 + r, m = m0 + c;
      xs[r][c] = (xj < C && m < M) ? static_cast<acc_t>(x[(b * C + xj) * M + m]) : acc_t(0);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kCovTile; ++k) {
      const acc_t a0 = gs[ty][k], a1 = gs[ty + 16][k];
      const acc_t b0 = xs[k][tx], b1 = xs[k][tx + 16];
      acc[0][0] += a0 * b0;
      acc[0][1] += a0 * b1;
      acc[1][0] += a1 * b0;
      acc[1][1] += a1 * b1;
    }
    __syncthreads();
  }
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 2; ++c) {
      const int64_t i = i0 + ty + 16 * r, m = m0 + tx + 16 * c;
      if (i < C && m < M) dx[(b * C + i) * M + m] = static_cast<scalar_t>(acc[r][c] - v[b * C + i]);
    }
}

}  // namespace covpool_kernels
}  // namespace srops
