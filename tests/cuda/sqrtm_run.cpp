// Runs the per-sample Newton–Schulz kernels (sqrtm_smem_kernels.cuh) on the CPU through
// tests/cuda/emulation.h, 256 threads per block meeting at their barriers: the forward against direct
// matrix loops, and the shared-memory and global-scratch instantiations of forward and backward against
// each other (bitwise: same arithmetic, only the address space differs). Prints "ok" or the mismatch.
#define SROPS_CUDA_EMULATION 1
#include "tests/cuda/emulation.h"

#include <cstdio>
#include <vector>

#include "covpool/sqrtm_smem_kernels.cuh"

namespace sq = srops::sqrtm_kernels;
using Vec = std::vector<double>;

static unsigned long long lcg = 777;
static double rnd() {
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<double>(lcg >> 11) / 9007199254740992.0 - 0.5;
}

static Vec matmul(const Vec& a, const Vec& b, int C) {
  Vec r(C * C, 0.0);
  for (int i = 0; i < C; ++i)
    for (int k = 0; k < C; ++k)
      for (int j = 0; j < C; ++j) r[i * C + j] += a[i * C + k] * b[k * C + j];
  return r;
}

static Vec half_three_minus(const Vec& m, int C) {
  Vec r(C * C);
  for (int i = 0; i < C * C; ++i) r[i] = -0.5 * m[i] + (i / C == i % C ? 1.5 : 0.0);
  return r;
}

static int failures = 0;
static void expect(const char* what, const double* got, const Vec& want, double tol) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::abs(got[i] - want[i]) <= tol * (1 + std::abs(want[i])))) {
      std::printf("%s: element %zu is %.17g, expected %.17g\n", what, i, got[i], want[i]);
      ++failures;
      return;
    }
}

int main() {
  const int B = 2, C = 9, N = 4, M = 13;
  const int64_t C2 = C * C, S = 3 * (N - 1) * C2;
  Vec a(B * C2), trace(B), grad(B * C2);
  for (int b = 0; b < B; ++b) {  // A = R Rᵀ / (tr(R Rᵀ) + eps): symmetric positive definite, trace below 1
    Vec r(C2);
    for (auto& e : r) e = rnd();
    Vec rt(C2);
    for (int i = 0; i < C; ++i)
      for (int j = 0; j < C; ++j) rt[i * C + j] = r[j * C + i];
    Vec s = matmul(r, rt, C);
    double t = 1e-5;
    for (int i = 0; i < C; ++i) t += s[i * C + i];
    for (int64_t i = 0; i < C2; ++i) a[b * C2 + i] = s[i] / t;
    trace[b] = t;
  }
  for (auto& e : grad) e = rnd();

  Vec out_sh(B * C2), st_sh(B * S), out_gl(B * C2), st_gl(B * S), scratch(B * 6 * C2);
  launch_blocks(B, 1, srops::kCovThreads, [&] {
    sq::forward_kernel<double, true>(a.data(), trace.data(), out_sh.data(), st_sh.data(), C, N, false, nullptr);
  });
  launch_blocks(B, 1, srops::kCovThreads, [&] {
    sq::forward_kernel<double, false>(a.data(), trace.data(), out_gl.data(), st_gl.data(), C, N, false,
                                      scratch.data());
  });
  for (int b = 0; b < B; ++b) {  // direct Newton–Schulz: Y1 = A T, Z1 = T, then Y Z products
    const Vec A(a.begin() + b * C2, a.begin() + (b + 1) * C2);
    Vec T = half_three_minus(A, C), Y = matmul(A, T, C), Z = T;
    for (int k = 2; k <= N; ++k) {
      const Vec W = matmul(Z, Y, C);
      expect("forward states Y", st_sh.data() + b * S + 3 * (k - 2) * C2, Y, 1e-12);
      expect("forward states W", st_sh.data() + b * S + 3 * (k - 2) * C2 + 2 * C2, W, 1e-12);
      T = half_three_minus(W, C);
      const Vec Yn = matmul(Y, T, C);
      if (k < N) Z = matmul(T, Z, C);
      Y = Yn;
    }
    for (auto& e : Y) e *= std::sqrt(trace[b]);
    expect("forward out", out_sh.data() + b * C2, Y, 1e-12);
  }
  expect("forward scratch == shared (out)", out_gl.data(), out_sh, 0.0);
  expect("forward scratch == shared (states)", st_gl.data(), st_sh, 0.0);

  Vec gx_sh(B * C2), gx_gl(B * C2);
  launch_blocks(B, 1, srops::kCovThreads, [&] {
    sq::backward_kernel<double, true>(grad.data(), out_sh.data(), a.data(), st_sh.data(), trace.data(), M, C, N,
                                      false, gx_sh.data(), nullptr);
  });
  launch_blocks(B, 1, srops::kCovThreads, [&] {
    sq::backward_kernel<double, false>(grad.data(), out_sh.data(), a.data(), st_sh.data(), trace.data(), M, C, N,
                                       false, gx_gl.data(), scratch.data());
  });
  expect("backward scratch == shared (gx)", gx_gl.data(), gx_sh, 0.0);
  bool finite = true;
  for (double e : gx_sh) finite = finite && std::isfinite(e);
  if (!finite) std::printf("backward gx holds NaN/inf\n"), ++failures;

  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
