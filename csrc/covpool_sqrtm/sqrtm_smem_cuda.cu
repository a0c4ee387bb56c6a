// Newton–Schulz iterations and their analytic backward, one thread block per sample with the
// working C×C matrices in shared memory (forward: 4 matrices, backward: 6; the saved A and
// iterates are read from global memory) when they fit the device's shared memory per block
// (C = 64: 64 KB / 96 KB in float32), else, up to C = kMaxPerSampleC, in a per-sample global
// scratch buffer (L2-resident at these sizes). Above that the caller takes the at::bmm path.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxPerSampleC = 128;

// dst = a·b (C×C, row-major); dst must not alias a or b.
template <typename T>
__device__ void mm(T* dst, const T* a, const T* b, int C) {
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
__device__ void half_three_minus(T* dst, const T* src, int C) {
  for (int idx = threadIdx.x; idx < C * C; idx += blockDim.x)
    dst[idx] = T(-0.5) * src[idx] + ((idx / C == idx % C) ? T(1.5) : T(0));
  __syncthreads();
}

// dst = ½(3s − u − uᵀ − v) (v may be null); dst must not alias u or v.
template <typename T>
__device__ void sym_update(T* dst, const T* s, const T* u, const T* v, int C) {
  for (int idx = threadIdx.x; idx < C * C; idx += blockDim.x) {
    const int i = idx / C, j = idx % C;
    T val = T(3) * s[idx] - u[idx] - u[j * C + i];
    if (v) val -= v[idx];
    dst[idx] = T(0.5) * val;
  }
  __syncthreads();
}

template <typename T>
__device__ void copy_mat(T* dst, const T* src, int64_t n) {
  for (int64_t idx = threadIdx.x; idx < n; idx += blockDim.x) dst[idx] = src[idx];
  __syncthreads();
}

template <typename T>
__device__ T block_sum(T val, T* red) {
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

template <typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(const T* __restrict__ a, const T* __restrict__ trace,
                                                           T* __restrict__ out, T* __restrict__ states, int C, int N,
                                                           bool row_mean, T* scratch) {
  extern __shared__ unsigned char smem_raw[];
  const int64_t C2 = static_cast<int64_t>(C) * C, b = blockIdx.x;
  T* Y = scratch ? scratch + b * 4 * C2 : reinterpret_cast<T*>(smem_raw);
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

template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const T* __restrict__ grad, const T* __restrict__ out, const T* __restrict__ mean,
                    const T* __restrict__ a, const T* __restrict__ states, const T* __restrict__ trace, int64_t M,
                    int C, int N, bool row_mean, T* __restrict__ gx, T* __restrict__ v, T* scratch) {
  extern __shared__ unsigned char smem_raw[];
  __shared__ T red[kThreads];
  const int64_t C2 = static_cast<int64_t>(C) * C, b = blockIdx.x;
  T* P = scratch ? scratch + b * 6 * C2 : reinterpret_cast<T*>(smem_raw);
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
    U1[idx] = g;
    gx[b * C2 + idx] = g;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    T s = 0;
    for (int j = 0; j < C; ++j) s += U1[i * C + j] * mean[b * C + j];
    v[b * C + i] = s;
  }
}

// Dynamic shared memory for `mats` C×C matrices if the device allows it, else 0.
template <typename T>
size_t smem_bytes(int64_t C, int mats) {
  const size_t bytes = static_cast<size_t>(mats) * C * C * sizeof(T);
  const size_t limit = at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin;
  const size_t static_bytes = kThreads * sizeof(T);
  return bytes + static_bytes <= limit ? bytes : 0;
}

template <typename K>
void allow_smem(K kernel, size_t bytes) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace

bool sqrtm_forward_smem(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                        at::Tensor& states) {
  const int64_t B = a.size(0), C = a.size(1);
  if (C > kMaxPerSampleC) return false;
  bool done = false;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "covpool_sqrtm_fwd_smem", [&] {
    const size_t bytes = smem_bytes<scalar_t>(C, 4);
    at::Tensor scratch;
    if (bytes == 0) scratch = at::empty({B, 4, C, C}, a.options());
    if (bytes > 0) allow_smem(forward_kernel<scalar_t>, bytes);
    forward_kernel<scalar_t><<<static_cast<unsigned>(B), kThreads, bytes, at::cuda::getCurrentCUDAStream()>>>(
        a.data_ptr<scalar_t>(), trace.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), states.data_ptr<scalar_t>(),
        static_cast<int>(C), static_cast<int>(N), row_mean, bytes ? nullptr : scratch.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    done = true;
  });
  return done;
}

bool sqrtm_backward_smem(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& mean, const at::Tensor& a,
                         const at::Tensor& states, const at::Tensor& trace, int64_t M, bool row_mean, at::Tensor& gx,
                         at::Tensor& v) {
  const int64_t B = a.size(0), C = a.size(1), N = states.size(1) / 3 + 1;
  if (C > kMaxPerSampleC) return false;
  bool done = false;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "covpool_sqrtm_bwd_smem", [&] {
    const size_t bytes = smem_bytes<scalar_t>(C, 6);
    at::Tensor scratch;
    if (bytes == 0) scratch = at::empty({B, 6, C, C}, a.options());
    if (bytes > 0) allow_smem(backward_kernel<scalar_t>, bytes);
    backward_kernel<scalar_t><<<static_cast<unsigned>(B), kThreads, bytes, at::cuda::getCurrentCUDAStream()>>>(
        grad.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
        states.data_ptr<scalar_t>(), trace.data_ptr<scalar_t>(), M, static_cast<int>(C), static_cast<int>(N),
        row_mean, gx.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(), bytes ? nullptr : scratch.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    done = true;
  });
  return done;
}

}  // namespace srops
