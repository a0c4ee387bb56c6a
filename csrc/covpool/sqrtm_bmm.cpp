// Batched-matmul (at::bmm) path of the Newton–Schulz iterations and their backward: every size on the CPU,
// large C on CUDA (the per-sample CUDA kernels keep whole matrices in shared memory, which stops paying
// off, or fitting, as C grows). See covpool_sqrtm.h and docs/ops.md §A.
//
// The backward is the reverse mode of the forward's own products, term for term (what autograd computes
// through the reference, without its graph): no product is rewritten with Y, Z, W = ZY taken as symmetric
// and commuting. Those identities hold in exact arithmetic only; for a rank-deficient Σ, Z grows as 1.5^k
// on Σ's null space and the rewritten chain (Z dZ Z, Y dY Y) amplified its rounding far faster than this one
// (float32 dx error 16× the reference's at 15 iterations, 250× at 20).
#include "covpool/covpool_sqrtm.h"

namespace srops {

namespace {

// ½(3I − w) for w [B, C, C]
at::Tensor half_three_minus(const at::Tensor& w) {
  at::Tensor t = w * -0.5;
  t.diagonal(0, 1, 2).add_(1.5);
  return t;
}

at::Tensor mT(const at::Tensor& m) { return m.transpose(1, 2); }

}  // namespace

at::Tensor normalise_by_trace(const at::Tensor& sigma, const at::Tensor& trace) {
  const at::Tensor t = at::where(trace == 0, at::ones_like(trace), trace);
  return (sigma / t.view({sigma.size(0), 1, 1})).contiguous();
}

void zero_where_trace_zero(at::Tensor& gx, const at::Tensor& trace) {
  gx.masked_fill_((trace == 0).view({gx.size(0), 1, 1}), 0);
}

void sqrtm_forward_bmm(const at::Tensor& a, const at::Tensor& trace, int64_t N, bool row_mean, at::Tensor& out,
                       at::Tensor& states) {
  const int64_t B = a.size(0);
  at::Tensor tm = half_three_minus(a);
  at::Tensor y = at::bmm(a, tm);
  at::Tensor z = tm;
  for (int64_t k = 2; k <= N; ++k) {
    const at::Tensor w = at::bmm(z, y);
    states.select(1, 3 * (k - 2)).copy_(y);
    states.select(1, 3 * (k - 2) + 1).copy_(z);
    states.select(1, 3 * (k - 2) + 2).copy_(w);
    tm = half_three_minus(w);
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
  const at::Tensor t = trace.view({B, 1, 1});
  // out = √t·Y_N: dY_N = √t·dout, and dt gets Σ(dout∘Y_N)/(2√t) = Σ(grad∘out)/(2t)
  const at::Tensor dout = row_mean ? (grad.unsqueeze(1) / static_cast<double>(C)).expand({B, C, C}) : grad;
  const at::Tensor dt_out = (grad * out).flatten(1).sum(1).view({B, 1, 1}) / (2 * t);
  at::Tensor dy = dout * t.sqrt();
  at::Tensor dz;  // undefined: no gradient reaches Z_N (the last step computes Y only)
  auto st = [&](int64_t k, int64_t which) { return states.select(1, 3 * (k - 1) + which); };
  for (int64_t k = N - 1; k >= 1; --k) {  // step k: W = Z Y, T = ½(3I − W), Y' = Y T, Z' = T Z
    const at::Tensor y = st(k, 0), z = st(k, 1), tm = half_three_minus(st(k, 2));
    at::Tensor dt = at::bmm(mT(y), dy);
    at::Tensor dy_prev = at::bmm(dy, mT(tm));
    at::Tensor dz_prev;
    if (dz.defined()) {
      dt.add_(at::bmm(dz, mT(z)));
      dz_prev = at::bmm(mT(tm), dz);
    }
    const at::Tensor dw = dt.mul_(-0.5);
    dz_prev = dz_prev.defined() ? dz_prev.add_(at::bmm(dw, mT(y))) : at::bmm(dw, mT(y));
    dy = dy_prev.add_(at::bmm(mT(z), dw));
    dz = dz_prev;
  }
  // step 0: T0 = ½(3I − A), Y_1 = A T0, Z_1 = T0 (N = 1: Y_1 alone)
  const at::Tensor t0 = half_three_minus(a);
  at::Tensor dt0 = at::bmm(mT(a), dy);
  if (dz.defined()) dt0.add_(dz);
  const at::Tensor da = at::bmm(dy, mT(t0)).sub_(dt0.mul_(0.5));
  // A = Σ/t, t = tr Σ + eps: dΣ = dA/t + (dt_out − Σ(dA∘A)/t)·I; gx = (dΣ + dΣᵀ)/M
  const at::Tensor diag = dt_out - (da * a).sum({1, 2}, /*keepdim=*/true) / t;
  at::Tensor gx = (da + mT(da)) / t;
  gx.diagonal(0, 1, 2).add_(2 * diag.view({B, 1}));
  gx.div_(static_cast<double>(M));
  zero_where_trace_zero(gx, trace);
  return gx.contiguous();
}

}  // namespace srops
