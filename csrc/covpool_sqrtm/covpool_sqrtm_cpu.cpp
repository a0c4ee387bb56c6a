// C++ CPU kernels of srops::covpool_sqrtm_fwd/bwd, float32 and float64 (see covpool_sqrtm.h).
//
// Covariance: x is read in chunks of kChunk columns; each chunk is centred into a
// small buffer and its Gram matrix (upper tiles only) is added, in double, to one of
// S partial sums per sample, so B·S tasks run in parallel even when B = 1.
// Iterations: one task per sample on Cp×Cp matrices zero-padded to the GEMM tile
// (the identity covers the first C diagonal entries only, so padding stays zero).
// dx = G (X − μ1ᵀ) in chunks, one task per (sample, chunk): each chunk of X is centred before the
// product (G X − (G μ)1ᵀ would cancel when |μ| ≫ the spread, and leave a residue on constant rows).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "covpool_sqrtm/covpool_sqrtm.h"
#include "covpool_sqrtm/gemm_cpu.h"

namespace srops {
namespace {

constexpr int64_t kChunk = 256;
// Above this C the iterations run batched on at::bmm (sqrtm_bmm.cpp) instead of per sample.
constexpr int64_t kMaxPerSampleC = 192;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Per-sample C×C algebra on zero-padded Cp×Cp row-major matrices.
template <typename T>
struct Mats {
  int64_t C, Cp;

  // dst = a·b; sym: the product is known to be symmetric (compute the upper tiles, mirror).
  void mm(T* dst, const T* a, const T* b, bool sym) const {
    cpu::gemm<T>(dst, a, b, Cp, Cp, C, Cp, Cp, Cp, sym);
    if (sym)
      for (int64_t i = 1; i < C; ++i)
        for (int64_t j = 0; j < i; ++j) dst[i * Cp + j] = dst[j * Cp + i];
  }
  // dst = ½(3I − src)
  void half_three_minus(T* dst, const T* src) const {
    for (int64_t i = 0; i < Cp * Cp; ++i) dst[i] = T(-0.5) * src[i];
    for (int64_t i = 0; i < C; ++i) dst[i * Cp + i] += T(1.5);
  }
  // dst = ½(3·s − u − uᵀ − v) (v may be null); dst must not alias u.
  void sym_update(T* dst, const T* s, const T* u, const T* v) const {
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j) {
        T val = T(3) * s[i * Cp + j] - u[i * Cp + j] - u[j * Cp + i];
        if (v) val -= v[i * Cp + j];
        dst[i * Cp + j] = T(0.5) * val;
      }
  }
  void load(T* dst, const T* src) const {  // C×C contiguous -> padded
    for (int64_t i = 0; i < C; ++i) std::copy(src + i * C, src + (i + 1) * C, dst + i * Cp);
  }
  void store(T* dst, const T* src) const {  // padded -> C×C contiguous
    for (int64_t i = 0; i < C; ++i) std::copy(src + i * Cp, src + i * Cp + C, dst + i * C);
  }
};

template <typename T>
void row_means(const T* x, T* mean, int64_t rows, int64_t M) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * M;
      // Summed in double throughout: a float32 row of equal values then has exactly that value as
      // its mean, so the centred rows (and the backward's X − μ1ᵀ) are exactly zero.
      double total = 0;
#pragma omp simd reduction(+ : total)
      for (int64_t m = 0; m < M; ++m) total += static_cast<double>(xr[m]);
      mean[r] = static_cast<T>(total / static_cast<double>(M));
    }
  });
}

// Upper triangle of sum over m of (x_m − μ)(x_m − μ)ᵀ, as S partial sums per sample in `part` [B, S, Cp, Cp].
template <typename T>
void covariance_partials(const T* x, const T* mean, double* part, int64_t B, int64_t C, int64_t Cp, int64_t M,
                         int64_t S) {
  const int64_t nchunks = ceil_div(M, kChunk);
  at::parallel_for(0, B * S, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xc(Cp * kChunk, T(0)), xt(kChunk * Cp, T(0)), g(Cp * Cp);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / S, s = task % S;
      double* acc = part + task * Cp * Cp;
      std::fill(acc, acc + Cp * Cp, 0.0);
      const int64_t c0 = s * nchunks / S, c1 = (s + 1) * nchunks / S;
      for (int64_t ch = c0; ch < c1; ++ch) {
        const int64_t m0 = ch * kChunk, w = std::min(kChunk, M - m0);
        for (int64_t i = 0; i < C; ++i) {
          const T* xr = x + (b * C + i) * M + m0;
          const T mu = mean[b * C + i];
          T* dst = xc.data() + i * w;
          for (int64_t m = 0; m < w; ++m) dst[m] = xr[m] - mu;
          for (int64_t m = 0; m < w; ++m) xt[m * Cp + i] = dst[m];
        }
        std::fill(xc.begin() + C * w, xc.begin() + Cp * w, T(0));
        cpu::gemm<T>(g.data(), xc.data(), xt.data(), Cp, Cp, w, w, Cp, Cp, /*upper_only=*/true);
        for (int64_t i = 0; i < C; ++i)
          for (int64_t j = i; j < C; ++j) acc[i * Cp + j] += static_cast<double>(g[i * Cp + j]);
      }
    }
  });
}

// Row means of x (into mean) and the centred Gram partial sums; entry(b, i, j) = Σ_b[i, j] (i <= j) in double.
template <typename T>
struct CentredGram {
  int64_t B, Cp, M, S;
  std::vector<double> part;

  CentredGram(const T* x, T* mean, int64_t B_, int64_t C, int64_t Cp_, int64_t M_)
      : B(B_), Cp(Cp_), M(M_), S(std::min(ceil_div(M_, kChunk), ceil_div(at::get_num_threads(), B_))) {
    row_means(x, mean, B * C, M);
    part.resize(B * S * Cp * Cp);
    covariance_partials(x, mean, part.data(), B, C, Cp, M, S);
  }
  double entry(int64_t b, int64_t i, int64_t j) const {
    double v = 0;
    for (int64_t s = 0; s < S; ++s) v += part[(b * S + s) * Cp * Cp + i * Cp + j];
    return v / static_cast<double>(M);
  }
};

template <typename T>
void sqrtm_forward(const T* x, int64_t B, int64_t C, int64_t M, int64_t N, double eps, bool row_mean, bool iterate,
                   T* out, T* mean, T* a_out, T* states, T* trace) {
  const int64_t Cp = ceil_div(C, cpu::tile_cols<T>()) * cpu::tile_cols<T>();
  const CentredGram<T> gram(x, mean, B, C, Cp, M);
  const Mats<T> mt{C, Cp};
  const int64_t P2 = Cp * Cp, C2 = C * C;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(6 * P2);
    T *A = buf.data(), *Y = A + P2, *Z = Y + P2, *W = Z + P2, *Tm = W + P2, *U = Tm + P2;
    for (int64_t b = begin; b < end; ++b) {
      std::fill(buf.begin(), buf.end(), T(0));
      double tr = eps;
      for (int64_t i = 0; i < C; ++i) {
        for (int64_t j = i; j < C; ++j) A[i * Cp + j] = A[j * Cp + i] = static_cast<T>(gram.entry(b, i, j));
        tr += static_cast<double>(A[i * Cp + i]);
      }
      const T t = static_cast<T>(tr);
      for (int64_t i = 0; i < P2; ++i) A[i] /= t;
      trace[b] = t;
      mt.store(a_out + b * C2, A);
      if (!iterate) continue;
      T* st = states + b * 3 * (N - 1) * C2;
      mt.half_three_minus(Tm, A);
      mt.mm(Y, A, Tm, true);  // N = 1: Y_1 = ½A(3I − A) is the result
      if (N >= 2) {
        std::copy(Tm, Tm + P2, Z);
        for (int64_t k = 2; k <= N; ++k) {
          mt.mm(W, Z, Y, true);  // W_{k-1} = Z_{k-1} Y_{k-1}
          mt.store(st + 3 * (k - 2) * C2, Y);
          mt.store(st + (3 * (k - 2) + 1) * C2, Z);
          mt.store(st + (3 * (k - 2) + 2) * C2, W);
          mt.half_three_minus(Tm, W);
          mt.mm(U, Y, Tm, true);
          std::swap(Y, U);
          if (k < N) {
            mt.mm(U, Tm, Z, true);
            std::swap(Z, U);
          }
        }
      }
      const T rt = static_cast<T>(std::sqrt(tr));
      if (row_mean) {
        for (int64_t j = 0; j < C; ++j) {
          double v = 0;
          for (int64_t i = 0; i < C; ++i) v += static_cast<double>(Y[i * Cp + j]);
          out[b * C + j] = static_cast<T>(v / static_cast<double>(C)) * rt;
        }
      } else {
        for (int64_t i = 0; i < C; ++i)
          for (int64_t j = 0; j < C; ++j) out[b * C2 + i * C + j] = rt * Y[i * Cp + j];
      }
    }
  });
}

// Per sample: gx = (dΣ + dΣᵀ)/M [Cp, Cp].
template <typename T>
void sqrtm_backward_chain(const T* grad, const T* out, const T* a_in, const T* states, const T* trace,
                          int64_t B, int64_t C, int64_t Cp, int64_t M, int64_t N, bool row_mean, T* gx) {
  const Mats<T> mt{C, Cp};
  const int64_t P2 = Cp * Cp, C2 = C * C;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(10 * P2);
    T *P = buf.data(), *A = P + P2, *Y = A + P2, *Z = Y + P2, *W = Z + P2, *dY = W + P2, *dZ = dY + P2,
      *U1 = dZ + P2, *U2 = U1 + P2, *U3 = U2 + P2;
    for (int64_t b = begin; b < end; ++b) {
      std::fill(buf.begin(), buf.end(), T(0));
      const double t = static_cast<double>(trace[b]);
      const T rt = static_cast<T>(std::sqrt(t));
      // a = Σ(G∘Y_N)/(2√t) = Σ(grad∘out)/(2t); P = √t·sym(G).
      double dot = 0;
      const int64_t n_out = row_mean ? C : C2;
      for (int64_t i = 0; i < n_out; ++i)
        dot += static_cast<double>(grad[b * n_out + i]) * static_cast<double>(out[b * n_out + i]);
      const double aa = dot / (2 * t);
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = 0; j < C; ++j) {
          const T gij = row_mean ? grad[b * C + j] / T(C) : grad[b * C2 + i * C + j];
          const T gji = row_mean ? grad[b * C + i] / T(C) : grad[b * C2 + j * C + i];
          P[i * Cp + j] = T(0.5) * rt * (gij + gji);
        }
      mt.load(A, a_in + b * C2);
      const T* st = states + b * 3 * (N - 1) * C2;
      if (N == 1) {
        mt.mm(U1, P, A, false);
        mt.sym_update(dY, P, U1, nullptr);  // dA
      } else {
        auto load_step = [&](int64_t k) {
          mt.load(Y, st + 3 * (k - 1) * C2);
          mt.load(Z, st + (3 * (k - 1) + 1) * C2);
          mt.load(W, st + (3 * (k - 1) + 2) * C2);
        };
        load_step(N - 1);
        mt.mm(U1, P, W, false);
        mt.sym_update(dY, P, U1, nullptr);  // dY = ½[P(3I − W) − W P]
        mt.mm(U1, P, Y, false);
        mt.mm(dZ, Y, U1, true);  // dZ = −½ Y P Y
        for (int64_t i = 0; i < P2; ++i) dZ[i] *= T(-0.5);
        for (int64_t k = N - 2; k >= 1; --k) {
          load_step(k);
          mt.mm(U1, dZ, Z, false);
          mt.mm(U2, Z, U1, true);  // Z dZ Z
          mt.mm(U1, dY, W, false);
          mt.mm(U3, dY, Y, false);
          mt.sym_update(P, dY, U1, U2);  // new dY into P (free now)
          mt.mm(U2, Y, U3, true);        // Y dY Y
          mt.mm(U1, dZ, W, false);
          mt.sym_update(U3, dZ, U1, U2);
          std::swap(dY, P);
          std::swap(dZ, U3);
        }
        mt.mm(U1, dY, A, false);
        mt.sym_update(U2, dY, U1, dZ);  // dA = ½[dY(3I − A) − A dY − dZ]
        std::swap(dY, U2);
      }
      // dΣ = dA/t + (a − Σ(dA∘A)/t)·I ; gx = 2 dΣ / M (dΣ is symmetric).
      double dd = 0;
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = 0; j < C; ++j) dd += static_cast<double>(dY[i * Cp + j]) * static_cast<double>(A[i * Cp + j]);
      const double diag = aa - dd / t;
      T* g = gx + b * P2;
      std::fill(g, g + P2, T(0));
      const double scale = 2.0 / static_cast<double>(M);
      for (int64_t i = 0; i < C; ++i)
        for (int64_t j = 0; j < C; ++j)
          g[i * Cp + j] = static_cast<T>(scale * (static_cast<double>(dY[i * Cp + j]) / t + (i == j ? diag : 0.0)));
    }
  });
}

template <typename T>
void dx_kernel(const T* x, const T* gx, const T* mean, T* dx, int64_t B, int64_t C, int64_t Cp, int64_t M) {
  constexpr int64_t VW = cpu::tile_cols<T>();
  const int64_t nchunks = ceil_div(M, kChunk);
  at::parallel_for(0, B * nchunks, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> xb(C * kChunk), ob(Cp * kChunk);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / nchunks, m0 = (task % nchunks) * kChunk;
      const int64_t w = std::min(kChunk, M - m0), wp = ceil_div(w, VW) * VW;
      for (int64_t j = 0; j < C; ++j) {
        const T* xr = x + (b * C + j) * M + m0;
        const T mu = mean[b * C + j];
        T* xc = xb.data() + j * wp;
        for (int64_t m = 0; m < w; ++m) xc[m] = xr[m] - mu;
        std::fill(xb.data() + j * wp + w, xb.data() + (j + 1) * wp, T(0));
      }
      cpu::gemm<T>(ob.data(), gx + b * Cp * Cp, xb.data(), Cp, wp, C, Cp, wp, wp, false);
      for (int64_t i = 0; i < C; ++i) {
        const T* orow = ob.data() + i * wp;
        std::copy(orow, orow + w, dx + (b * C + i) * M + m0);
      }
    }
  });
}

}  // namespace

void covariance_cpu(const at::Tensor& x, at::Tensor& sigma) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covariance_cpu", [&] {
    using T = scalar_t;
    const int64_t Cp = ceil_div(C, cpu::tile_cols<T>()) * cpu::tile_cols<T>();
    std::vector<T> mean(B * C);
    const CentredGram<T> gram(x.data_ptr<T>(), mean.data(), B, C, Cp, M);
    T* out = sigma.data_ptr<T>();
    at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
      for (int64_t bi = begin; bi < end; ++bi) {
        const int64_t b = bi / C, i = bi % C;
        for (int64_t j = i; j < C; ++j) out[(b * C + i) * C + j] = out[(b * C + j) * C + i] = static_cast<T>(gram.entry(b, i, j));
      }
    });
  });
}

void centred_product_cpu(const at::Tensor& g, const at::Tensor& x, at::Tensor& out) {
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "centred_product_cpu", [&] {
    using T = scalar_t;
    const int64_t Cp = ceil_div(C, cpu::tile_cols<T>()) * cpu::tile_cols<T>();
    std::vector<T> mean(B * C), gx(B * Cp * Cp, T(0));
    row_means(x.data_ptr<T>(), mean.data(), B * C, M);
    const Mats<T> mt{C, Cp};
    for (int64_t b = 0; b < B; ++b) mt.load(gx.data() + b * Cp * Cp, g.data_ptr<T>() + b * C * C);
    dx_kernel<T>(x.data_ptr<T>(), gx.data(), mean.data(), out.data_ptr<T>(), B, C, Cp, M);
  });
}

SqrtmFwdResult covpool_sqrtm_fwd_cpu(const at::Tensor& x_in, int64_t iterations, double eps, bool row_mean) {
  check_sqrtm_fwd_args(x_in, iterations, eps, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2), N = iterations;
  const auto opt = x.options();
  at::Tensor out = row_mean ? at::empty({B, C}, opt) : at::empty({B, C, C}, opt);
  at::Tensor mean = at::empty({B, C}, opt), a = at::empty({B, C, C}, opt);
  at::Tensor states = at::empty({B, 3 * (N - 1), C, C}, opt), trace = at::empty({B}, opt);
  const bool per_sample = C <= kMaxPerSampleC;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_sqrtm_fwd_cpu", [&] {
    sqrtm_forward<scalar_t>(x.data_ptr<scalar_t>(), B, C, M, N, eps, row_mean, per_sample, out.data_ptr<scalar_t>(),
                            mean.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(), states.data_ptr<scalar_t>(),
                            trace.data_ptr<scalar_t>());
  });
  if (!per_sample) sqrtm_forward_bmm(a, trace, N, row_mean, out, states);
  return {out, mean, a, states, trace};
}

at::Tensor covpool_sqrtm_bwd_cpu(const at::Tensor& grad, const at::Tensor& x_in, const at::Tensor& mean,
                                 const at::Tensor& a, const at::Tensor& states, const at::Tensor& trace,
                                 const at::Tensor& out, bool row_mean) {
  check_sqrtm_bwd_args(grad, x_in, mean, a, states, trace, out, row_mean, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2), N = states.size(1) / 3 + 1;
  at::Tensor dx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_sqrtm_bwd_cpu", [&] {
    using T = scalar_t;
    const int64_t Cp = ceil_div(C, cpu::tile_cols<T>()) * cpu::tile_cols<T>();
    std::vector<T> gx(B * Cp * Cp, T(0));
    const at::Tensor g = grad.contiguous(), o = out.contiguous(), mu = mean.contiguous(), ac = a.contiguous(),
                     sc = states.contiguous(), tc = trace.contiguous();
    if (C <= kMaxPerSampleC) {
      sqrtm_backward_chain<T>(g.data_ptr<T>(), o.data_ptr<T>(), ac.data_ptr<T>(), sc.data_ptr<T>(),
                              tc.data_ptr<T>(), B, C, Cp, M, N, row_mean, gx.data());
    } else {
      const at::Tensor gx_t = sqrtm_backward_bmm(g, o, ac, sc, tc, M, row_mean);
      const Mats<T> mt{C, Cp};
      for (int64_t b = 0; b < B; ++b) mt.load(gx.data() + b * Cp * Cp, gx_t.data_ptr<T>() + b * C * C);
    }
    dx_kernel<T>(x.data_ptr<T>(), gx.data(), mu.data_ptr<T>(), dx.data_ptr<T>(), B, C, Cp, M);
  });
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_sqrtm_fwd", &covpool_sqrtm_fwd_cpu);
  m.impl("covpool_sqrtm_bwd", &covpool_sqrtm_bwd_cpu);
}

}  // namespace srops
