// C++ CPU kernels of srops::covpool_sqrtm_fwd/bwd (see covpool_sqrtm.h) and the covariance code of
// srops::covpool_fwd/bwd, float32 and float64.
//
// Every O(C²M) and O(C³) product is ATen's batched GEMM (at::bmm), i.e. the platform BLAS that the
// reference's torch.bmm runs on (MKL / oneDNN / OpenBLAS, whichever PyTorch was built with), so no product
// is slower than the reference's on any CPU. What is fused or saved around them:
//   - the row means (summed in double, so a constant row centres to exactly zero) and the centring in one
//     pass per row;
//   - the Newton–Schulz iterates are the ones the backward reads (no recomputation, no autograd graph);
//   - the backward runs the analytic chain (sqrtm_bmm.cpp) and one GEMM, dx = gx (X − μ1ᵀ), where autograd
//     through the reference runs two.
// The iterations are the reference's products in the reference's order, unsymmetrised: for a rank-deficient
// Σ, Z grows as 1.5^k on Σ's null space, and forcing Y, Z or Y·Z symmetric moves rounding from the rows of
// Y that Z·Y multiplies by nothing into the ones it multiplies by Z, which made the error grow ~10× faster.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {
namespace {

// One row of M: returns its mean μ (summed in double: a row of equal values has exactly that value as its
// mean, so it centres to exactly zero) and writes xc = x − μ. Cloned for AVX-512 and AVX2 and chosen when
// the library loads, since the build's baseline ISA (x86-64) would leave these loops 2- or 4-wide.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SROPS_ISA_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SROPS_ISA_CLONES
#endif

template <typename T>
inline T centre_row_impl(const T* x, T* xc, int64_t M) {
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t m = 0; m < M; ++m) total += static_cast<double>(x[m]);
  const T mu = static_cast<T>(total / static_cast<double>(M));
#pragma omp simd
  for (int64_t m = 0; m < M; ++m) xc[m] = x[m] - mu;
  return mu;
}

template <typename T>
inline T row_mean_impl(const T* x, int64_t M) {
  double total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t m = 0; m < M; ++m) total += static_cast<double>(x[m]);
  return static_cast<T>(total / static_cast<double>(M));
}

template <typename T>
inline void subtract_impl(const T* x, T mu, T* xc, int64_t L) {
#pragma omp simd
  for (int64_t m = 0; m < L; ++m) xc[m] = x[m] - mu;
}

SROPS_ISA_CLONES float row_mean(const float* x, int64_t M) { return row_mean_impl(x, M); }
SROPS_ISA_CLONES double row_mean(const double* x, int64_t M) { return row_mean_impl(x, M); }
SROPS_ISA_CLONES void subtract(const float* x, float mu, float* xc, int64_t L) { subtract_impl(x, mu, xc, L); }
SROPS_ISA_CLONES void subtract(const double* x, double mu, double* xc, int64_t L) { subtract_impl(x, mu, xc, L); }
SROPS_ISA_CLONES float centre_row(const float* x, float* xc, int64_t M) { return centre_row_impl(x, xc, M); }
SROPS_ISA_CLONES double centre_row(const double* x, double* xc, int64_t M) { return centre_row_impl(x, xc, M); }

template <typename T>
void centre_rows(const T* x, T* mean, T* xc, int64_t rows, int64_t M) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) mean[r] = centre_row(x + r * M, xc + r * M, M);
  });
}

// Σ·M = Σ_chunks xc xcᵀ for x [B, C, M] contiguous: the row means first, then x centred one column chunk
// at a time into a cache-sized buffer [B, C, L] that the GEMM reads back at once (the centred copy of x
// never goes to memory, which the reference writes and reads again), the chunks' products added by
// baddbmm in order.
template <typename T>
at::Tensor chunked_gram(const at::Tensor& x, at::Tensor& mean) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  mean = at::empty({B, C}, x.options());
  const T* xp = x.data_ptr<T>();
  T* mp = mean.data_ptr<T>();
  at::parallel_for(0, B * C, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) mp[r] = row_mean(xp + r * M, M);
  });
  constexpr int64_t kChunkElems = int64_t(1) << 18;  // 1 MB of float32 per chunk
  const int64_t L = std::min(M, std::max<int64_t>(256, (kChunkElems / (B * C)) / 64 * 64));
  at::Tensor buf = at::empty({B, C, L}, x.options());
  at::Tensor g = at::empty({B, C, C}, x.options());
  for (int64_t m0 = 0; m0 < M; m0 += L) {
    const int64_t w = std::min(L, M - m0);
    at::Tensor xc = w == L ? buf : buf.narrow(2, 0, w);
    T* bp = buf.data_ptr<T>();
    const int64_t ld = xc.stride(1);
    at::parallel_for(0, B * C, 16, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) subtract(xp + r * M + m0, mp[r], bp + r * ld, w);
    });
    if (m0 == 0) {
      at::bmm_out(g, xc, xc.transpose(1, 2));
    } else {
      g.baddbmm_(xc, xc.transpose(1, 2));
    }
  }
  return g;
}

// g [B, C, C] := (g's upper triangle / M), mirrored: one pass, exactly symmetric whatever the BLAS's blocking.
template <typename T>
void scale_and_mirror(T* g, int64_t B, int64_t C, double M) {
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      T* gb = g + b * C * C;
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = i; j < C; ++j) gb[i * C + j] = gb[j * C + i] = static_cast<T>(gb[i * C + j] / M);
    }
  });
}

}  // namespace

at::Tensor centre_cpu(const at::Tensor& x, at::Tensor& mean) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor xc = at::empty_like(x);
  mean = at::empty({B, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_centre_cpu", [&] {
    centre_rows<scalar_t>(x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), xc.data_ptr<scalar_t>(), B * C, M);
  });
  return xc;
}

at::Tensor centred_gram_cpu(const at::Tensor& x, at::Tensor& mean) {
  at::Tensor g;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_gram_cpu", [&] {
    g = chunked_gram<scalar_t>(x, mean);
    scale_and_mirror<scalar_t>(g.data_ptr<scalar_t>(), g.size(0), g.size(1), static_cast<double>(x.size(2)));
  });
  return g;
}

SqrtmFwdResult covpool_sqrtm_fwd_cpu(const at::Tensor& x_in, int64_t iterations, double eps, bool row_mean) {
  check_sqrtm_fwd_args(x_in, iterations, eps, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), N = iterations;
  at::Tensor mean;
  const at::Tensor sigma = centred_gram_cpu(x, mean);
  const at::Tensor trace = sigma.diagonal(0, 1, 2).sum(1, false, at::kDouble).add_(eps).to(x.scalar_type());
  const at::Tensor a = normalise_by_trace(sigma, trace);
  at::Tensor out = row_mean ? at::empty({B, C}, x.options()) : at::empty({B, C, C}, x.options());
  at::Tensor states = at::empty({B, 3 * (N - 1), C, C}, x.options());
  sqrtm_forward_bmm(a, trace, N, row_mean, out, states);
  return {out, mean, a, states, trace};
}

at::Tensor covpool_sqrtm_bwd_cpu(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& mean,
                                 const at::Tensor& a, const at::Tensor& states, const at::Tensor& trace,
                                 const at::Tensor& out, bool row_mean) {
  check_sqrtm_bwd_args(grad, x_in, mean, a, states, trace, out, row_mean, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(2);
  const at::Tensor gx = sqrtm_backward_bmm(grad.contiguous(), out.contiguous(), a.contiguous(), states.contiguous(),
                                           trace.contiguous(), M, row_mean);
  at::Tensor dx = at::empty_like(x);
  at::bmm_out(dx, gx, x - mean.unsqueeze(2));
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_sqrtm_fwd", &covpool_sqrtm_fwd_cpu);
  m.impl("covpool_sqrtm_bwd", &covpool_sqrtm_bwd_cpu);
}

}  // namespace srops
