// Runs the CBAM kernels and the covpool centring kernel, which need no block-level cooperation (one thread per element or per (b, position),
// strided over a 2-D grid) on the CPU through tests/cuda/emulation.h, with one thread per block and a grid
// smaller than the problem, so that both grid-stride loops are taken; compares each with a direct loop.
// Prints "ok" and exits 0, or names the first mismatch and exits 1.
#define SROPS_CUDA_EMULATION 1
#include "tests/cuda/emulation.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cbam/cbam_kernels.cuh"
#include "covpool/covpool_sqrtm_kernels.cuh"

namespace ck = srops::cbam_kernels;
using Vec = std::vector<double>;

static unsigned long long lcg = 12345;
static double rnd() {
  lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<double>((lcg >> 11) % 2000) / 1000.0 - 1.0;  // multiples of 1e-3: ties happen
}
static Vec random_vec(size_t n) {
  Vec v(n);
  for (auto& e : v) e = rnd();
  return v;
}

// Every block of a gx × gy grid in turn, one thread each; the outputs start as NaN.
template <typename F>
void launch(unsigned gx, unsigned gy, std::vector<Vec*> outputs, F&& body) {
  for (Vec* o : outputs) std::fill(o->begin(), o->end(), std::nan(""));
  launch_blocks(gx, gy, 1, body);
}

static int failures = 0;
// As expect, but an expected NaN must be NaN (the pooled statistics of a NaN input).
static void expect_nan(const char* what, const Vec& got, const Vec& want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (std::isnan(want[i]) ? !std::isnan(got[i]) : !(std::abs(got[i] - want[i]) <= 1e-12 * (1 + std::abs(want[i])))) {
      std::printf("%s: element %zu is %.17g, expected %.17g\n", what, i, got[i], want[i]);
      ++failures;
      return;
    }
}
static bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
static void expect(const char* what, const Vec& got, const Vec& want) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::abs(got[i] - want[i]) <= 1e-12 * (1 + std::abs(want[i])))) {  // NaN (unwritten) fails too
      std::printf("%s: element %zu is %.17g, expected %.17g\n", what, i, got[i], want[i]);
      ++failures;
      return;
    }
}

// input_backward_kernel's dx (average and max pooling, every gate and pooled gradient present) by direct loops.
static Vec input_backward_expected(const Vec& g, const Vec& c, const Vec& s, const Vec& gp,
                                   const std::vector<int64_t>& sarg, const Vec& gst, const std::vector<int64_t>& carg,
                                   int64_t B, int64_t C, int64_t N) {
  const int64_t P = 2;
  Vec want(B * C * N);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t n = 0; n < N; ++n) {
        const int64_t r = b * C + ch, off = r * N + n;
        double v = g[off] * s[b * N + n] + gp[b * 2 * N + N + n] / C + (ch == sarg[b * N + n] ? gp[b * 2 * N + n] : 0.0);
        v *= c[r];
        v += gst[r * P] / N + (carg[r] == n ? gst[r * P + 1] : 0.0);
        want[off] = v;
      }
  return want;
}

// Every kernel at one N; apply_kernel and input_backward_kernel element-wise (kAligned = false) and, where N
// is a multiple of their vector width (2 doubles), by 16-byte packs too.
static void check_all(int64_t N) {
  const int64_t B = 3, C = 5, P = 2;
  const Vec x = random_vec(B * C * N), g = random_vec(B * C * N), c = random_vec(B * C), s = random_vec(B * N);
  const Vec gst = random_vec(B * C * P), gp = random_vec(B * 2 * N);
  std::vector<int64_t> carg(B * C), sarg(B * N);
  for (int64_t r = 0; r < B * C; ++r) carg[r] = (r * 3) % N;
  for (int64_t i = 0; i < B * N; ++i) sarg[i] = (i * 2) % C;
  const unsigned gx = 2, gy = 2;  // fewer blocks than positions and rows: both strides are taken

  Vec out(B * C * N), want(B * C * N);
  const bool packs = N % ck::vec_width<double, true>() == 0;
  if (packs && !(aligned16(x.data()) && aligned16(s.data()) && aligned16(out.data()) && aligned16(g.data())))
    std::printf("test buffers not 16-byte aligned\n"), ++failures;
  for (int64_t r = 0; r < B * C; ++r)
    for (int64_t n = 0; n < N; ++n) want[r * N + n] = x[r * N + n] * c[r] * s[(r / C) * N + n];
  launch(gx, gy, {&out}, [&] {
    ck::apply_kernel<double, double, false>(x.data(), c.data(), s.data(), out.data(), B * C, C, N);
  });
  expect("apply_kernel", out, want);
  if (packs) {
    launch(gx, gy, {&out}, [&] {
      ck::apply_kernel<double, double, true>(x.data(), c.data(), s.data(), out.data(), B * C, C, N);
    });
    expect("apply_kernel (packs)", out, want);
  }

  launch(gx, gy, {&out}, [&] {
    ck::channel_pool_backward_kernel<double, double>(gst.data(), carg.data(), out.data(), B * C, N, true, true);
  });
  for (int64_t r = 0; r < B * C; ++r)
    for (int64_t n = 0; n < N; ++n) want[r * N + n] = gst[r * P] / N + (n == carg[r] ? gst[r * P + 1] : 0.0);
  expect("channel_pool_backward_kernel", out, want);

  // spatial_pool_kernel on x, with NaNs (torch.max: the first NaN channel wins, the mean is NaN), and on
  // values from {0, 0.5, 1} without a gate (ties everywhere: the first maximal channel wins)
  Vec xnan = x, xtie(x.size());
  for (size_t i = 0; i < xtie.size(); ++i) xtie[i] = 0.5 * static_cast<double>((i * 7 + i / 3) % 3);
  xnan[(1 * C + 2) * N + 3] = xnan[(2 * C + 1) * N + 3] = xnan[(2 * C + 3) * N + 3] = xnan[(0 * C + 4) * N + 0] = std::nan("");
  for (const Vec* xs : {&x, static_cast<const Vec*>(&xnan), static_cast<const Vec*>(&xtie)})
    for (const bool use_packs : {false, true}) {
      if (use_packs && !packs) continue;
      Vec pooled(B * 2 * N), want_pooled(B * 2 * N);
      std::vector<int64_t> am(B * N, -7), want_am(B * N);
      const double* gate = xs == &xtie ? nullptr : c.data();
      launch(gx, gy, {&pooled}, [&] {
        if (use_packs)
          ck::spatial_pool_kernel<double, double, true>(xs->data(), gate, pooled.data(), am.data(), B, C, N);
        else
          ck::spatial_pool_kernel<double, double, false>(xs->data(), gate, pooled.data(), am.data(), B, C, N);
      });
      for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N; ++n) {
          double best = 0, sum = 0;
          int64_t idx = -1;
          for (int64_t ch = 0; ch < C; ++ch) {
            const double y = (*xs)[(b * C + ch) * N + n] * (gate ? gate[b * C + ch] : 1.0);
            sum += y;
            if (idx < 0 || (!std::isnan(best) && (std::isnan(y) || y > best))) best = y, idx = ch;
          }
          want_pooled[b * 2 * N + n] = best, want_pooled[b * 2 * N + N + n] = sum / C, want_am[b * N + n] = idx;
        }
      expect_nan(use_packs ? "spatial_pool_kernel pooled (packs)" : "spatial_pool_kernel pooled", pooled, want_pooled);
      if (am != want_am) std::printf("spatial_pool_kernel argmax differs\n"), ++failures;
    }

  launch(gx, gy, {&out}, [&] {
    ck::spatial_pool_backward_dx_kernel<double, double>(gp.data(), c.data(), sarg.data(), out.data(), B, C, N);
  });
  for (int64_t b = 0; b < B; ++b)
    for (int64_t ch = 0; ch < C; ++ch)
      for (int64_t n = 0; n < N; ++n)
        want[(b * C + ch) * N + n] =
            (gp[b * 2 * N + N + n] / C + (ch == sarg[b * N + n] ? gp[b * 2 * N + n] : 0.0)) * c[b * C + ch];
  expect("spatial_pool_backward_dx_kernel", out, want);

  for (const bool use_packs : {false, true}) {
    if (use_packs && !packs) continue;
    Vec ds(B * N), want_ds(B * N, 0.0);
    launch(gx, gy, {&out, &ds}, [&] {
      if (use_packs)
        ck::apply_backward_dx_kernel<double, double, true>(g.data(), x.data(), c.data(), s.data(), out.data(),
                                                           ds.data(), B, C, N);
      else
        ck::apply_backward_dx_kernel<double, double, false>(g.data(), x.data(), c.data(), s.data(), out.data(),
                                                            ds.data(), B, C, N);
    });
    for (int64_t b = 0; b < B; ++b)
      for (int64_t ch = 0; ch < C; ++ch)
        for (int64_t n = 0; n < N; ++n) {
          const int64_t off = (b * C + ch) * N + n;
          want[off] = g[off] * s[b * N + n] * c[b * C + ch];
          want_ds[b * N + n] += g[off] * (x[off] * c[b * C + ch]);
        }
    expect(use_packs ? "apply_backward_dx_kernel dx (packs)" : "apply_backward_dx_kernel dx", out, want);
    expect(use_packs ? "apply_backward_dx_kernel ds (packs)" : "apply_backward_dx_kernel ds", ds, want_ds);
  }

  launch(gx, gy, {&out}, [&] {
    ck::input_backward_kernel<double, double, false>(g.data(), c.data(), s.data(), gp.data(), sarg.data(), gst.data(),
                                                     carg.data(), out.data(), B, C, N, true, true);
  });
  want = input_backward_expected(g, c, s, gp, sarg, gst, carg, B, C, N);
  expect("input_backward_kernel", out, want);
  if (packs) {
    launch(gx, gy, {&out}, [&] {
      ck::input_backward_kernel<double, double, true>(g.data(), c.data(), s.data(), gp.data(), sarg.data(),
                                                      gst.data(), carg.data(), out.data(), B, C, N, true, true);
    });
    expect("input_backward_kernel (packs)", out, want);
  }

  // centre_kernel: x [B, C, M] centred into S chunks of L columns (zero past M), and the plain S = 1, L = M copy.
  for (const auto [M, S, L] : {std::array<int64_t, 3>{13, 4, 4}, std::array<int64_t, 3>{13, 1, 13},
                               std::array<int64_t, 3>{8, 2, 4}}) {
    const Vec xm = random_vec(B * C * M), mu = random_vec(B * C);
    Vec xc(B * S * C * L), want_xc(B * S * C * L);
    launch(gx, gy, {&xc}, [&] {
      srops::covpool_kernels::centre_kernel<double, double>(xm.data(), mu.data(), xc.data(), B * S * C, C, M, S, L);
    });
    for (int64_t b = 0; b < B; ++b)
      for (int64_t sp = 0; sp < S; ++sp)
        for (int64_t ch = 0; ch < C; ++ch)
          for (int64_t l = 0; l < L; ++l) {
            const int64_t m = sp * L + l;
            want_xc[((b * S + sp) * C + ch) * L + l] = m < M ? xm[(b * C + ch) * M + m] - mu[b * C + ch] : 0.0;
          }
    expect("centre_kernel", xc, want_xc);
  }
}

// input_backward_kernel with several threads per block meeting at its barriers: more channels than one
// staging chunk (kCbamThreads), and more threads than position groups (idle threads still at the barriers).
static void check_input_backward_blocks(int64_t N, bool packs) {
  const int64_t B = 2, C = srops::kCbamThreads + 44, P = 2;
  const Vec g = random_vec(B * C * N), c = random_vec(B * C), s = random_vec(B * N);
  const Vec gst = random_vec(B * C * P), gp = random_vec(B * 2 * N);
  std::vector<int64_t> carg(B * C), sarg(B * N);
  for (int64_t r = 0; r < B * C; ++r) carg[r] = (r * 7) % N;
  for (int64_t i = 0; i < B * N; ++i) sarg[i] = (i * 37) % C;
  Vec out(B * C * N, std::nan(""));
  launch_blocks(2, 1, 4, [&] {
    if (packs)
      ck::input_backward_kernel<double, double, true>(g.data(), c.data(), s.data(), gp.data(), sarg.data(), gst.data(),
                                                      carg.data(), out.data(), B, C, N, true, true);
    else
      ck::input_backward_kernel<double, double, false>(g.data(), c.data(), s.data(), gp.data(), sarg.data(),
                                                       gst.data(), carg.data(), out.data(), B, C, N, true, true);
  });
  expect(packs ? "input_backward_kernel (4 threads, packs)" : "input_backward_kernel (4 threads)", out,
         input_backward_expected(g, c, s, gp, sarg, gst, carg, B, C, N));
}

int main() {
  check_all(7);
  check_all(10);
  check_input_backward_blocks(7, false);
  check_input_backward_blocks(10, true);
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
