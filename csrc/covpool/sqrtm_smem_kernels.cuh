// Newton–Schulz iterations and their analytic backward for srops::covpool_sqrtm (see covpool_sqrtm.h), one
// thread block per sample, on raw pointers. The working C×C matrices (forward: 4, backward: 6; the saved
// A and iterates are read from global memory) live in dynamic shared memory (kShared) or in a per-sample
// global scratch buffer (L2-resident at these sizes); sqrtm_plan (covpool_sqrtm_launch.h) chooses.
// Launchers: sqrtm_smem_cuda.cu.
#pragma once

#include <cstdint>

#include "common/cuda_compat.h"
#include "covpool/covpool_sqrtm_launch.h"

namespace srops {
namespace sqrtm_kernels {

// dst = a·b (C×C, row-major); dst must not alias a or b.
template <typename T>
SROPS_DEVICE void mm(T* dst, const T* a, const T* b, int C) {
  for (int idx = threadIdx.x; idx < C * C; idx += blockDim.x) {
    const int i = idx / C, j = idx % C;
    T s = 0;
    for (int k = 0; k < C; ++k) s += a[i * C + k] * b[k * C + j];
    dst[idx] = s;
  }
  __syncthreads();
}

// dst = ½(3I − src); dst may alias src (each element is read and written by one thread).
template <typename T>
SROPS_DEVICE void half_three_minus(T* dst, const T* src, int C) {
  for (int idx = threadIdx.x; idx < C * C; idx += blockDim.x)
    dst[idx] = T(-0.5) * src[idx] + ((idx / C == idx % C) ? T(1.5) : T(0));
  __syncthreads();
}

// dst = ½(3s − u − uᵀ − v) (v may be null); dst must not alias u or v.
template <typename T>
SROPS_DEVICE void sym_update(T* dst, const T* s, const T* u, const T* v, int C) {
  for (int idx = threadIdx.x; idx < C * C; idx += blockDim.x) {
    const int i = idx / C, j = idx % C;
    T val = T(3) * s[idx] - u[idx] - u[j * C + i];
    if (v) val -= v[idx];
    dst[idx] = T(0.5) * val;
  }
  __syncthreads();
}

template <typename T>
SROPS_DEVICE void copy_mat(T* dst, const T* src, int64_t n) {
  for (int64_t idx = threadIdx.x; idx < n; idx += blockDim.x) dst[idx] = src[idx];
  __syncthreads();
}

template <typename T>
SROPS_DEVICE T block_sum(T val, T* red) {
  red[threadIdx.x] = val;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  const T total = red[0];
  __syncthreads();
  return total;
}

// kShared: the working matrices live in dynamic shared memory (scratch unused), else in scratch
// [B, kSqrtmFwdMats, C, C]. Two instantiations, so that each path's loads are of one address space.
template <typename T, bool kShared>
SROPS_GLOBAL void SROPS_LAUNCH_BOUNDS(kCovThreads)
    forward_kernel(const T* __restrict__ a, const T* __restrict__ trace, T* __restrict__ out,
                   T* __restrict__ states, int C, int N, bool row_mean, T* __restrict__ scratch) {
  const int64_t C2 = static_cast<int64_t>(C) * C, b = blockIdx.x;
  T* Y;
  if constexpr (kShared) {
    SROPS_DYNAMIC_SHARED(T, smem);
    Y = smem;
  } else {
    Y = scratch + b * kSqrtmFwdMats * C2;
  }
  T *Z = Y + C2, *W = Z + C2, *U = W + C2;
  const T* A = a + b * C2;
  T* st = states + b * 3 * (N - 1) * C2;
  half_three_minus(W, A, C);
  mm(Y, A, W, C);
  if (N >= 2) copy_mat(Z, W, C2);
  for (int k = 2; k <= N; ++k) {
    mm(W, Z, Y, C);  // W_{k-1}
    T* sk = st + 3 * (k - 2) * C2;
    for (int64_t idx = threadIdx.x; idx < C2; idx += blockDim.x) {
      sk[idx] = Y[idx];
      sk[C2 + idx] = Z[idx];
      sk[2 * C2 + idx] = W[idx];
    }
    __syncthreads();
    half_three_minus(W, W, C);
    mm(U, Y, W, C);
    T* tmp = Y;
    Y = U;
    U = tmp;
    if (k < N) {
      mm(U, W, Z, C);
      tmp = Z;
      Z = U;
      U = tmp;
    }
  }
  const T rt = sqrt(trace[b]);
  if (row_mean) {
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
      T s = 0;
      for (int i = 0; i < C; ++i) s += Y[i * C + j];
      out[b * C + j] = rt * s / T(C);
    }
  } else {
    for (int64_t idx = threadIdx.x; idx < C2; idx += blockDim.x) out[b * C2 + idx] = rt * Y[idx];
  }
}

// kShared as in forward_kernel; scratch [B, kSqrtmBwdMats, C, C] otherwise.
template <typename T, bool kShared>
SROPS_GLOBAL void SROPS_LAUNCH_BOUNDS(kCovThreads)
    backward_kernel(const T* __restrict__ grad, const T* __restrict__ out, const T* __restrict__ a,
                    const T* __restrict__ states, const T* __restrict__ trace, int64_t M, int C, int N, bool row_mean,
                    T* __restrict__ gx, T* __restrict__ scratch) {
  SROPS_SHARED T red[kCovThreads];
  const int64_t C2 = static_cast<int64_t>(C) * C, b = blockIdx.x;
  T* P;
  if constexpr (kShared) {
    SROPS_DYNAMIC_SHARED(T, smem);
    P = smem;
  } else {
    P = scratch + b * kSqrtmBwdMats * C2;
  }
  T *dY = P + C2, *dZ = dY + C2, *U1 = dZ + C2, *U2 = U1 + C2, *U3 = U2 + C2;
  const T t = trace[b], rt = sqrt(t);
  const int64_t n_out = row_mean ? C : C2;
  T dot = 0;
  for (int64_t idx = threadIdx.x; idx < n_out; idx += blockDim.x) dot += grad[b * n_out + idx] * out[b * n_out + idx];
  const T aa = block_sum(dot, red) / (T(2) * t);
  for (int64_t idx = threadIdx.x; idx < C2; idx += blockDim.x) {
    const int i = idx / C, j = idx % C;
    const T gij = row_mean ? grad[b * C + j] / T(C) : grad[b * C2 + idx];
    const T gji = row_mean ? grad[b * C + i] / T(C) : grad[b * C2 + j * C + i];
    P[idx] = T(0.5) * rt * (gij + gji);
  }
  __syncthreads();
  const T* A = a + b * C2;
  const T* st = states + b * 3 * (N - 1) * C2;
  if (N == 1) {
    mm(U1, P, A, C);
    sym_update(dY, P, U1, static_cast<const T*>(nullptr), C);
  } else {
    const T* Y = st + 3 * (N - 2) * C2;
    const T* W = Y + 2 * C2;
    mm(U1, P, W, C);
    sym_update(dY, P, U1, static_cast<const T*>(nullptr), C);
    mm(U1, P, Y, C);
    mm(dZ, Y, U1, C);
    for (int64_t idx = threadIdx.x; idx < C2; idx += blockDim.x) dZ[idx] *= T(-0.5);
    __syncthreads();
    for (int k = N - 2; k >= 1; --k) {
      Y = st + 3 * (k - 1) * C2;
      const T* Z = Y + C2;
      W = Y + 2 * C2;
      mm(U1, dZ, Z, C);
      mm(U2, Z, U1, C);  // Z dZ Z
      mm(U1, dY, W, C);
      mm(U3, dY, Y, C);
      sym_update(P, dY, U1, U2, C);  // new dY
      mm(U2, Y, U3, C);              // Y dY Y
      mm(U1, dZ, W, C);
      sym_update(U3, dZ, U1, U2, C);  // new dZ
      T* tmp = dY;
      dY = P;
      P = tmp;
      tmp = dZ;
      dZ = U3;
      U3 = tmp;
    }
    mm(U1, dY, A, C);
    sym_update(U2, dY, U1, dZ, C);
    T* tmp = dY;
    dY = U2;
    U2 = tmp;
  }
  T part = 0;
  for (int64_t idx = threadIdx.x; idx < C2; idx += blockDim.x) part += dY[idx] * A[idx];
  const T diag = aa - block_sum(part, red) / t;
  const T scale = T(2) / static_cast<T>(M);
  for (int64_t idx = threadIdx.x; idx < C2; idx += blockDim.x) {
    const T g = scale * (dY[idx] / t + ((idx / C == idx % C) ? diag : T(0)));
    gx[b * C2 + idx] = g;
  }
}

}  // namespace sqrtm_kernels
}  // namespace srops
