// C++ CPU kernels of srops::covpool_sqrtm_fwd/bwd (see covpool_sqrtm.h) and the covariance code of
// srops::covpool_fwd/bwd, float32 and float64.
//
// Every O(C²M) and O(C³) product is ATen's batched GEMM (at::bmm), i.e. the platform BLAS that the
// reference's torch.bmm runs on (MKL / oneDNN / OpenBLAS, whichever PyTorch was built with), so no product
// is slower than the reference's on any CPU. What is fused or saved around them:
//   - x is centred in cache-sized chunks that the GEMM reads at once (the reference writes the centred copy
//     of x to memory and reads it back), with row means summed in double (a constant row centres to exactly
//     zero): by sample where every thread gets one (the sample's means, centring and GEMMs in one task, Σ's
//     upper part at 3/4 of the full product's work), else by column chunk across the batch;
//   - the Newton–Schulz iterates are the ones the backward reads (no recomputation, no autograd graph);
//   - the backward runs the analytic chain (sqrtm_bmm.cpp) and one GEMM, dx = gx (X − μ1ᵀ), where autograd
//     through the reference runs two.
// The iterations are the reference's products in the reference's order, unsymmetrised: for a rank-deficient
// Σ, Z grows as 1.5^k on Σ's null space, and forcing Y, Z or Y·Z symmetric moves rounding from the rows of
// Y that Z·Y multiplies by nothing into the ones it multiplies by Z (float32 error 100× the reference's at
// 15 iterations).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/cpu_isa.h"
#include "covpool/covpool_sqrtm.h"

namespace srops {
namespace {

// The row loops: row_mean sums in double (a row of equal values has exactly that value as its mean, so it
// centres to exactly zero); subtract writes xc = x − μ. Compiled for AVX-512 and AVX2 beside the build's
// baseline (x86-64, which would leave them 2- or 4-wide) and chosen at run time by cpu_isa(), so the
// environment's caps (SROPS_CPU_NO_AVX512, SROPS_CPU_NO_AVX2, ATEN_CPU_CAPABILITY) select the portable paths.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SROPS_HAS_ISA_PATHS 1
#define SROPS_TARGET(isa) __attribute__((target(isa)))
#else
#define SROPS_HAS_ISA_PATHS 0
#endif

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

#if SROPS_HAS_ISA_PATHS
template <typename T>
SROPS_TARGET("avx512f,fma") T row_mean_avx512(const T* x, int64_t M) { return row_mean_impl(x, M); }
template <typename T>
SROPS_TARGET("avx2") T row_mean_avx2(const T* x, int64_t M) { return row_mean_impl(x, M); }
template <typename T>
SROPS_TARGET("avx512f,fma") void subtract_avx512(const T* x, T mu, T* xc, int64_t L) { subtract_impl(x, mu, xc, L); }
template <typename T>
SROPS_TARGET("avx2") void subtract_avx2(const T* x, T mu, T* xc, int64_t L) { subtract_impl(x, mu, xc, L); }
#endif

template <typename T>
T row_mean(const T* x, int64_t M) {
#if SROPS_HAS_ISA_PATHS
  switch (cpu_isa()) {
    case CpuIsa::avx512: return row_mean_avx512(x, M);
    case CpuIsa::avx2: return row_mean_avx2(x, M);
    default: break;
  }
#endif
  return row_mean_impl(x, M);
}

template <typename T>
void subtract(const T* x, T mu, T* xc, int64_t L) {
#if SROPS_HAS_ISA_PATHS
  switch (cpu_isa()) {
    case CpuIsa::avx512: return subtract_avx512(x, mu, xc, L);
    case CpuIsa::avx2: return subtract_avx2(x, mu, xc, L);
    default: break;
  }
#endif
  subtract_impl(x, mu, xc, L);
}

template <typename T>
void row_means(const T* x, T* mean, int64_t rows, int64_t M) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) mean[r] = row_mean(x + r * M, M);
  });
}

// Columns per chunk: about 1 MB of float32 across the batch, at least 256, a multiple of 64, at most M.
int64_t chunk_len(int64_t B, int64_t C, int64_t M) {
  constexpr int64_t kChunkElems = int64_t(1) << 18;
  return std::min(M, std::max<int64_t>(256, (kChunkElems / (B * C)) / 64 * 64));
}

// The column chunks [0, nchunks) of x split into `parts` contiguous runs, one task each, in ONE parallel
// region: each task centres its chunks into its own cache-sized buffer [B, C, L] (serially) and runs the
// GEMMs on it itself (ATen runs them single-threaded inside the region). Alternating a parallel centring
// loop with multi-threaded GEMMs instead costs two thread-pool hand-overs per chunk, which on a loaded
// machine made two threads several times slower than one.
struct ChunkPlan {
  int64_t L, nchunks, parts;
};

ChunkPlan chunk_plan(int64_t B, int64_t C, int64_t M) {
  const int64_t L = chunk_len(B, C, M), nchunks = (M + L - 1) / L;
  return {L, nchunks, std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), nchunks))};
}

// fn(m0, w, xc [B, C, w] view of the task's buffer, part) for each chunk, xc = x[:, :, m0:m0+w] − μ.
// Every task that runs ATen ops on the caller's tensors does so under the caller's thread-local state
// (inference mode, grad mode, dispatch keys): ATen's worker threads start without it, and an in-place
// product into an inference tensor outside inference mode is refused.
template <typename T, typename F>
void for_centred_chunks(const at::Tensor& x, const at::Tensor& mean, const ChunkPlan& plan, const F& fn) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2), L = plan.L;
  const T* xp = x.data_ptr<T>();
  const T* mp = mean.data_ptr<T>();
  const at::ThreadLocalState caller;
  at::parallel_for(0, plan.parts, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard mode(caller);
    at::Tensor buf = at::empty({B, C, L}, x.options());
    T* bp = buf.data_ptr<T>();
    for (int64_t part = begin; part < end; ++part) {
      const int64_t c0 = part * plan.nchunks / plan.parts, c1 = (part + 1) * plan.nchunks / plan.parts;
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t m0 = ch * L, w = std::min(L, M - m0);
        for (int64_t r = 0; r < B * C; ++r) subtract(xp + r * M + m0, mp[r], bp + r * L, w);
        fn(m0, w, w == L ? buf : buf.narrow(2, 0, w), part);
      }
    }
  });
}

// fn(b, m0, w, xc [C, w]) for each sample b and column chunk of it, xc = x[b, :, m0:m0+w] − μ, with the
// batch split into contiguous runs, one task each, in one parallel region (each task centres into its own
// cache-sized buffer and runs its GEMMs itself, single-threaded). A sample's chunks run in order in one task,
// so its products can be accumulated in place; each chunk is chunk_len of one sample, as long as a 1 MB buffer
// allows (the whole row
// for C <= 64 at 48² maps), so every GEMM has a long inner dimension. Used when there are at least as many
// samples as threads; the column-chunk plan above serves small batches. With fill_mean, the task first
// writes the sample's row means into mean (x[b] is then read from memory once, the centring reads it from
// cache).
template <typename T, typename F>
void for_centred_sample_chunks(const at::Tensor& x, at::Tensor& mean, bool fill_mean, const F& fn) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2), L = chunk_len(1, C, M);
  const T* xp = x.data_ptr<T>();
  T* mp = mean.data_ptr<T>();
  const at::ThreadLocalState caller;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard mode(caller);
    at::Tensor buf = at::empty({C, L}, x.options());
    T* bp = buf.data_ptr<T>();
    for (int64_t b = begin; b < end; ++b) {
      if (fill_mean)
        for (int64_t r = 0; r < C; ++r) mp[b * C + r] = row_mean(xp + (b * C + r) * M, M);
      for (int64_t m0 = 0; m0 < M; m0 += L) {
        const int64_t w = std::min(L, M - m0);
        for (int64_t r = 0; r < C; ++r) subtract(xp + (b * C + r) * M + m0, mp[b * C + r], bp + r * L, w);
        fn(b, m0, w, w == L ? buf : buf.narrow(1, 0, w));
      }
    }
  });
}

// acc [C, C] := beta·acc + xc xcᵀ on and above the diagonal (the rest is left as is; scale_and_mirror fills
// it): rows [0, h) against all rows, rows [h, C) against themselves, 3/4 of the full product's work in two
// GEMMs that keep a long inner dimension (splitting further shortens them more than it saves). Below 64
// rows the halves are too thin for the BLAS's blocking to pay, and the full product is faster.
void add_upper_gram(const at::Tensor& acc, const at::Tensor& xc, int beta) {
  const int64_t C = xc.size(0);
  if (C < 64) {
    acc.addmm_(xc, xc.t(), beta);
    return;
  }
  const int64_t h = C / 2;
  const at::Tensor top = xc.narrow(0, 0, h), bottom = xc.narrow(0, h, C - h);
  acc.narrow(0, 0, h).addmm_(top, xc.t(), beta);
  acc.narrow(0, h, C - h).narrow(1, h, C - h).addmm_(bottom, bottom.t(), beta);
}

// By sample when every thread gets a sample, or when the column plan would run one task anyway (one chunk,
// or one thread): then the sample's GEMMs are the 3/4-work split of add_upper_gram, free to use every thread.
bool split_by_sample(int64_t B, int64_t C, int64_t M) {
  return B >= at::get_num_threads() || chunk_plan(B, C, M).parts == 1;
}

// Σ·M = Σ_chunks xc xcᵀ for x [B, C, M] contiguous and its row means, x centred chunk by chunk in cache (the
// reference writes the centred copy of x to memory and reads it back). By sample: each sample's chunk
// products are added into its own Σ in order. By column chunk: each task adds its chunks' products into its
// own partial sum (baddbmm), the partials are added in task order.
template <typename T>
at::Tensor chunked_gram(const at::Tensor& x, at::Tensor& mean) {
  const int64_t B = x.size(0), C = x.size(1);
  if (split_by_sample(B, C, x.size(2))) {
    at::Tensor gram = at::empty({B, C, C}, x.options());
    mean = at::empty({B, C}, x.options());
    const auto add = [&](int64_t b, int64_t m0, int64_t, const at::Tensor& xc) {
      add_upper_gram(gram.select(0, b), xc, /*beta=*/m0 == 0 ? 0 : 1);
    };
    for_centred_sample_chunks<T>(x, mean, /*fill_mean=*/true, add);
    return gram;
  }
  mean = row_means_cpu(x);
  const ChunkPlan plan = chunk_plan(B, C, x.size(2));
  at::Tensor part_sums = at::empty({plan.parts, B, C, C}, x.options());
  std::vector<char> started(plan.parts, 0);
  for_centred_chunks<T>(x, mean, plan, [&](int64_t, int64_t, const at::Tensor& xc, int64_t part) {
    at::Tensor acc = part_sums.select(0, part);
    if (!started[part]) {
      at::bmm_out(acc, xc, xc.transpose(1, 2));
      started[part] = 1;
    } else {
      acc.baddbmm_(xc, xc.transpose(1, 2));
    }
  });
  return plan.parts == 1 ? part_sums.select(0, 0) : part_sums.sum(0);
}

// dx = gx (X − μ1ᵀ) for x [B, C, M] contiguous, gx [B, C, C], mean [B, C]: x centred chunk by chunk in cache,
// each chunk's product written straight into its columns of dx.
template <typename T>
void chunked_centred_product(const at::Tensor& gx, const at::Tensor& x, at::Tensor mean, at::Tensor& dx) {
  if (split_by_sample(x.size(0), x.size(1), x.size(2))) {
    const auto product = [&](int64_t b, int64_t m0, int64_t w, const at::Tensor& xc) {
      dx.select(0, b).narrow(1, m0, w).addmm_(gx.select(0, b), xc, /*beta=*/0);
    };
    for_centred_sample_chunks<T>(x, mean, /*fill_mean=*/false, product);
    return;
  }
  const ChunkPlan plan = chunk_plan(x.size(0), x.size(1), x.size(2));
  for_centred_chunks<T>(x, mean, plan, [&](int64_t m0, int64_t w, const at::Tensor& xc, int64_t) {
    dx.narrow(2, m0, w).baddbmm_(gx, xc, /*beta=*/0);
  });
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

// fn(b0, nb) on the batch split into contiguous runs, one task each, in one parallel region (ATen runs the
// GEMMs inside single-threaded), when there are several threads and samples; else fn(0, B) as is, which
// lets the GEMMs use every thread. The Newton–Schulz steps are many small batched GEMMs: a thread-pool
// hand-over for each costs more than the GEMM on a loaded machine.
template <typename F>
void for_batch_parts(int64_t B, const F& fn) {
  const int64_t parts = std::min<int64_t>(at::get_num_threads(), B);
  if (parts <= 1) return fn(0, B);
  const at::ThreadLocalState caller;
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard mode(caller);
    for (int64_t p = begin; p < end; ++p) {
      const int64_t b0 = p * B / parts, b1 = (p + 1) * B / parts;
      fn(b0, b1 - b0);
    }
  });
}

}  // namespace

at::Tensor row_means_cpu(const at::Tensor& x) {
  at::Tensor mean = at::empty({x.size(0), x.size(1)}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_row_means_cpu", [&] {
    row_means<scalar_t>(x.data_ptr<scalar_t>(), mean.data_ptr<scalar_t>(), x.size(0) * x.size(1), x.size(2));
  });
  return mean;
}

at::Tensor centred_product_cpu(const at::Tensor& gx, const at::Tensor& x, const at::Tensor& mean) {
  at::Tensor dx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_centred_product_cpu", [&] {
    chunked_centred_product<scalar_t>(gx.contiguous(), x, mean.contiguous(), dx);
  });
  return dx;
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
  for_batch_parts(B, [&](int64_t b0, int64_t nb) {
    at::Tensor out_p = out.narrow(0, b0, nb), states_p = states.narrow(0, b0, nb);
    sqrtm_forward_bmm(a.narrow(0, b0, nb), trace.narrow(0, b0, nb), N, row_mean, out_p, states_p);
  });
  return {out, mean, a, states, trace};
}

at::Tensor covpool_sqrtm_bwd_cpu(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& mean,
                                 const at::Tensor& a, const at::Tensor& states, const at::Tensor& trace,
                                 const at::Tensor& out, bool row_mean) {
  check_sqrtm_bwd_args(grad, x_in, mean, a, states, trace, out, row_mean, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t M = x.size(2);
  const at::Tensor g = grad.contiguous(), o = out.contiguous(), ac = a.contiguous(), sc = states.contiguous(),
                   tc = trace.contiguous();
  const int64_t B = x.size(0), C = x.size(1);
  at::Tensor gx = at::empty({B, C, C}, ac.options());
  for_batch_parts(B, [&](int64_t b0, int64_t nb) {
    gx.narrow(0, b0, nb).copy_(sqrtm_backward_bmm(g.narrow(0, b0, nb), o.narrow(0, b0, nb), ac.narrow(0, b0, nb),
                                                  sc.narrow(0, b0, nb), tc.narrow(0, b0, nb), M, row_mean));
  });
  return centred_product_cpu(gx, x, mean);
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_sqrtm_fwd", &covpool_sqrtm_fwd_cpu);
  m.impl("covpool_sqrtm_bwd", &covpool_sqrtm_bwd_cpu);
}

const char* covpool_cpu_path() {
#if SROPS_HAS_ISA_PATHS
  switch (cpu_isa()) {
    case CpuIsa::avx512: return "avx512";
    case CpuIsa::avx2: return "avx2";
    default: break;
  }
#endif
  return "base";
}

}  // namespace srops
