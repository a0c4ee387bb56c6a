// Batched-matmul (at::bmm) path of the Newton–Schulz iterations and their analytic backward,
// used for large C on either device (the per-sample kernels keep whole matrices in cache or
// shared memory, which stops paying off, or fitting, as C grows). Same maths and savings as
// the per-sample kernels: see covpool_sqrtm.h and docs/ops.md §A.
#include <cmath>
#include <vector>

#include "covpool_sqrtm/covpool_sqrtm.h"

namespace srops {

namespace {

at::Tensor sym_update(const at::Tensor& s, const at::Tensor& u, const at::Tensor* v) {
  at::Tensor r = 3 * s - u - u.transpose(1, 2);
  if (v) r = r - *v;
  return 0.5 * r;
}

}  // namespace

void sqrtm_forward_bmm(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                       at::Tensor& states) {
  const int64_t B = a.size(0), C = a.size(1);
  const at::Tensor eye = at::eye(C, a.options()).expand({B, C, C});
  at::Tensor tm = 0.5 * (3 * eye - a);
  at::Tensor y = at::bmm(a, tm);
  at::Tensor z = tm;
  for (int64_t k = 2; k <= N; ++k) {
    const at::Tensor w = at::bmm(z, y);
    states.select(1, 3 * (k - 2)).copy_(y);
    states.select(1, 3 * (k - 2) + 1).copy_(z);
    states.select(1, 3 * (k - 2) + 2).copy_(w);
    tm = 0.5 * (3 * eye - w);
    const at::Tensor y_next = at::bmm(y, tm);
    if (k < N) z = at::bmm(tm, z);
    y = y_next;
  }
  const at::Tensor rt = trace.sqrt().view({B, 1, 1});
  if (row_mean) {
    out.copy_(y.mean(1) * rt.view({B, 1}));
  } else {
    out.copy_(y * rt);
  }
}

at::Tensor sqrtm_backward_bmm(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& a,
                              const at::Tensor& states, const at::Tensor& trace, int64_t M, bool row_mean) {
  const int64_t B = a.size(0), C = a.size(1), N = states.size(1) / 3 + 1;
  const at::Tensor g = row_mean ? (grad.unsqueeze(1) / static_cast<double>(C)).expand({B, C, C}) : grad;
  const at::Tensor t = trace.view({B, 1, 1});
  const at::Tensor aa = (grad * out).flatten(1).sum(1).view({B, 1, 1}) / (2 * t);
  const at::Tensor p = 0.5 * t.sqrt() * (g + g.transpose(1, 2));
  at::Tensor da;
  if (N == 1) {
    da = sym_update(p, at::bmm(p, a), nullptr);
  } else {
    auto st = [&](int64_t k, int64_t which) { return states.select(1, 3 * (k - 1) + which); };
    at::Tensor y = st(N - 1, 0), w = st(N - 1, 2);
    at::Tensor dy = sym_update(p, at::bmm(p, w), nullptr);
    at::Tensor dz = -0.5 * at::bmm(y, at::bmm(p, y));
    for (int64_t k = N - 2; k >= 1; --k) {
      y = st(k, 0);
      const at::Tensor z = st(k, 1);
      w = st(k, 2);
      const at::Tensor zdzz = at::bmm(z, at::bmm(dz, z));
      const at::Tensor ydyy = at::bmm(y, at::bmm(dy, y));
      const at::Tensor dy_next = sym_update(dy, at::bmm(dy, w), &zdzz);
      dz = sym_update(dz, at::bmm(dz, w), &ydyy);
      dy = dy_next;
    }
    da = sym_update(dy, at::bmm(dy, a), &dz);
  }
  const at::Tensor diag = aa - (da * a).sum({1, 2}, /*keepdim=*/true) / t;
  const at::Tensor eye = at::eye(C, a.options()).expand({B, C, C});
  const at::Tensor gx = (2.0 / static_cast<double>(M)) * (da / t + diag * eye);
  return gx.contiguous();
}

}  // namespace srops
