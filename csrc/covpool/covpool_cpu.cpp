// C++ CPU kernels of covariance pooling, float32 and float64.
// Means and dot products accumulate in chunks of kChunk elements in the input
// type (vectorised) and across chunks in double, so M up to ~1e6 stays accurate.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "common/checks.h"
#include "covpool/covpool.h"

namespace srops {
namespace {

constexpr int64_t kChunk = 1024;

template <typename scalar_t>
double row_sum(const scalar_t* a, int64_t M) {
  double total = 0;
  for (int64_t s = 0; s < M; s += kChunk) {
    const int64_t e = std::min(M, s + kChunk);
    scalar_t part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t m = s; m < e; ++m) part += a[m];
    total += static_cast<double>(part);
  }
  return total;
}

template <typename scalar_t>
double centred_dot(const scalar_t* a, scalar_t ma, const scalar_t* b, scalar_t mb, int64_t M) {
  double total = 0;
  for (int64_t s = 0; s < M; s += kChunk) {
    const int64_t e = std::min(M, s + kChunk);
    scalar_t part = 0;
#pragma omp simd reduction(+ : part)
    for (int64_t m = s; m < e; ++m) part += (a[m] - ma) * (b[m] - mb);
    total += static_cast<double>(part);
  }
  return total;
}

// Row means of x [B*C, M] into mean [B*C].
template <typename scalar_t>
void row_means(const scalar_t* x, scalar_t* mean, int64_t rows, int64_t M) {
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) mean[r] = static_cast<scalar_t>(row_sum(x + r * M, M) / M);
  });
}

// sigma_b[i, j] for j <= i, mirrored: one task per (b, i).
template <typename scalar_t>
void covpool_fwd_kernel(const scalar_t* xp, scalar_t* op, int64_t B, int64_t C, int64_t M) {
  std::vector<scalar_t> mean(B * C);
  row_means(xp, mean.data(), B * C, M);
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / C, i = bi % C;
      const scalar_t* xi = xp + bi * M;
      scalar_t* ob = op + b * C * C;
      for (int64_t j = 0; j <= i; ++j) {
        const int64_t bj = b * C + j;
        const scalar_t v = static_cast<scalar_t>(centred_dot(xi, mean[bi], xp + bj * M, mean[bj], M) / M);
        ob[i * C + j] = v;
        ob[j * C + i] = v;
      }
    }
  });
}

// dx_b[i, :] = sum_j (G_ij + G_ji) / M * (x_b[j, :] - mu_j): one task per (b, i).
template <typename scalar_t>
void covpool_bwd_kernel(const scalar_t* gp, const scalar_t* xp, scalar_t* dp, int64_t B, int64_t C, int64_t M) {
  std::vector<scalar_t> mean(B * C);
  row_means(xp, mean.data(), B * C, M);
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / C, i = bi % C;
      const scalar_t* gb = gp + b * C * C;
      scalar_t* drow = dp + bi * M;
      std::fill(drow, drow + M, scalar_t(0));
      for (int64_t j = 0; j < C; ++j) {
        const scalar_t coef = (gb[i * C + j] + gb[j * C + i]) / static_cast<scalar_t>(M);
        if (coef == scalar_t(0)) continue;
        const int64_t bj = b * C + j;
        const scalar_t* xj = xp + bj * M;
        const scalar_t mj = mean[bj];
#pragma omp simd
        for (int64_t m = 0; m < M; ++m) drow[m] += coef * (xj[m] - mj);
      }
    }
  });
}

void check_x(const char* op, const at::Tensor& x) {
  check_dim(op, "x", x, 3, "[B, C, M]");
  check_float_or_double(op, "x", x);
  check_device_type(op, "x", x, at::kCPU);
  check_nonempty(op, "x", x);
}

}  // namespace

at::Tensor covpool_fwd_cpu(const at::Tensor& x_in) {
  check_x("covpool_fwd", x_in);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), M = x.size(2);
  at::Tensor out = at::empty({B, C, C}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_fwd_cpu", [&] {
    covpool_fwd_kernel<scalar_t>(x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, C, M);
  });
  return out;
}

at::Tensor covpool_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x_in) {
  check_x("covpool_bwd", x_in);
  const int64_t B = x_in.size(0), C = x_in.size(1), M = x_in.size(2);
  check_same_dtype("covpool_bwd", "grad", grad_in, x_in);
  check_device_type("covpool_bwd", "grad", grad_in, at::kCPU);
  check_shape("covpool_bwd", "grad", grad_in, {B, C, C});
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  at::Tensor dx = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "covpool_bwd_cpu", [&] {
    covpool_bwd_kernel<scalar_t>(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), dx.data_ptr<scalar_t>(), B, C, M);
  });
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("covpool_fwd", &covpool_fwd_cpu);
  m.impl("covpool_bwd", &covpool_bwd_cpu);
}

}  // namespace srops
