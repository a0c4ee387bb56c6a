// C++ CPU kernels of fused CBAM (see cbam.h). float32/float64 natively; float16/bfloat16 are loaded
// into float32 (at::opmath_type) and stored back. Reductions over H*W run in chunks of kChunk in the
// compute type (vectorised) and across chunks in double; reductions over C run over tiles of kTile
// positions, channel by channel, so the inner loops stay contiguous and vectorisable.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cbam/cbam.h"
#include "common/cpu_isa.h"

namespace srops {
namespace {

constexpr int64_t kChunk = 1024;  // H*W chunk of a per-channel reduction
constexpr int64_t kTile = 4096;   // H*W tile of a reduction over channels (long runs per channel row)

// The kernels are compiled twice: for the baseline x86-64 (SSE2) and, on x86 with GCC/Clang, for
// AVX2 (8 float lanes), chosen at run time by the CPU's features.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define SROPS_CBAM_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2")
#define SROPS_CBAM_ISA avx2
#include "cbam/cbam_cpu_kernels.h"
#undef SROPS_CBAM_ISA
#pragma GCC pop_options
#endif
#define SROPS_CBAM_ISA base
#include "cbam/cbam_cpu_kernels.h"
#undef SROPS_CBAM_ISA

// AVX2 where the CPU has it, unless the environment caps the level (common/cpu_isa.h)
bool use_avx2() {
#ifdef SROPS_CBAM_AVX2
  return cpu_isa() >= CpuIsa::avx2;
#else
  return false;
#endif
}

#ifdef SROPS_CBAM_AVX2
#define SROPS_CBAM_CALL(KERNEL, ...) (use_avx2() ? avx2::KERNEL(__VA_ARGS__) : base::KERNEL(__VA_ARGS__))
#else
#define SROPS_CBAM_CALL(KERNEL, ...) base::KERNEL(__VA_ARGS__)
#endif

}  // namespace

const char* cbam_cpu_path() { return use_avx2() ? "avx2" : "base"; }

std::tuple<at::Tensor, at::Tensor> cbam_channel_pool_fwd_cpu(const at::Tensor& x_in, bool avg, bool max) {
  cbam_check_channel_pool("cbam_channel_pool_fwd", x_in, avg, max, at::kCPU);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
  at::Tensor stats = at::empty({B, C, int64_t(avg) + int64_t(max)}, x.options());
  at::Tensor argmax = at::empty(max ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options().dtype(at::kLong));
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_channel_pool_fwd_cpu", [&] {
    SROPS_CBAM_CALL(channel_pool_kernel<scalar_t>, x.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(),
                                  max ? argmax.data_ptr<int64_t>() : nullptr, B * C, N, avg, max);
  });
  return {stats, argmax};
}

at::Tensor cbam_channel_pool_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x, const at::Tensor& argmax_in,
                                     bool avg, bool max) {
  const char* op = "cbam_channel_pool_bwd";
  cbam_check_channel_pool(op, x, avg, max, at::kCPU);
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
  cbam_check_like(op, "grad_stats", grad_in, x, {B, C, int64_t(avg) + int64_t(max)});
  cbam_check_index(op, "argmax", argmax_in, x, max ? at::IntArrayRef{B, C} : at::IntArrayRef{0});
  const at::Tensor grad = grad_in.contiguous(), argmax = argmax_in.contiguous();
  if (max) cbam_check_index_range(op, "argmax", argmax, N, "indices in [0, H*W)");
  at::Tensor dx = at::empty(x.sizes(), x.options());
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_channel_pool_bwd_cpu", [&] {
    SROPS_CBAM_CALL(channel_pool_backward_kernel<scalar_t>, grad.data_ptr<scalar_t>(), max ? argmax.data_ptr<int64_t>() : nullptr,
                                           dx.data_ptr<scalar_t>(), B * C, N, avg, max);
  });
  return dx;
}

std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_fwd_cpu(const at::Tensor& x_in,
                                                             const std::optional<at::Tensor>& c_in) {
  cbam_check_x("cbam_spatial_pool_fwd", x_in, at::kCPU);
  cbam_check_gates("cbam_spatial_pool_fwd", x_in, c_in, std::nullopt);
  const at::Tensor x = x_in.contiguous();
  const auto c = opt_contig(c_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor pooled = at::empty({B, 2, H, W}, x.options());
  at::Tensor argmax = at::empty({B, H, W}, x.options().dtype(at::kLong));
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_spatial_pool_fwd_cpu", [&] {
    using A = at::opmath_type<scalar_t>;
    using Lane = std::conditional_t<sizeof(A) == 8, int64_t, int32_t>;  // index of the value's lane width
    if (C <= std::numeric_limits<int32_t>::max()) {
      SROPS_CBAM_CALL(spatial_pool_kernel<Lane>, x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c),
                      pooled.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(), B, C, H * W);
    } else {
      SROPS_CBAM_CALL(spatial_pool_kernel<int64_t>, x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c),
                      pooled.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(), B, C, H * W);
    }
  });
  return {pooled, argmax};
}

std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                             const std::optional<at::Tensor>& c_in,
                                                             const at::Tensor& argmax_in, bool input_grad) {
  const char* op = "cbam_spatial_pool_bwd";
  cbam_check_x(op, x_in, at::kCPU);
  cbam_check_gates(op, x_in, c_in, std::nullopt);
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3);
  cbam_check_like(op, "grad_pooled", grad_in, x_in, {B, 2, H, W});
  cbam_check_index(op, "argmax", argmax_in, x_in, {B, H, W});
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous(), argmax = argmax_in.contiguous();
  cbam_check_index_range(op, "argmax", argmax, C, "channel indices in [0, C)");
  const auto c = opt_contig(c_in);
  at::Tensor dx = at::empty(input_grad ? x.sizes() : at::IntArrayRef{0}, x.options());
  at::Tensor dc = at::empty(c.has_value() ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options());
  if (!input_grad && !c.has_value()) return {dx, dc};
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_spatial_pool_bwd_cpu", [&] {
    SROPS_CBAM_CALL(spatial_pool_backward_kernel<scalar_t>, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c),
                                           argmax.data_ptr<int64_t>(), input_grad ? dx.data_ptr<scalar_t>() : nullptr,
                                           c.has_value() ? dc.data_ptr<scalar_t>() : nullptr, B, C, H * W);
  });
  return {dx, dc};
}

at::Tensor cbam_apply_fwd_cpu(const at::Tensor& x_in, const std::optional<at::Tensor>& c_in,
                              const std::optional<at::Tensor>& s_in) {
  cbam_check_x("cbam_apply_fwd", x_in, at::kCPU);
  cbam_check_gates("cbam_apply_fwd", x_in, c_in, s_in);
  const at::Tensor x = x_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in);
  at::Tensor out = at::empty(x.sizes(), x.options());
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_apply_fwd_cpu", [&] {
    SROPS_CBAM_CALL(apply_kernel<scalar_t>, x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), opt_ptr<scalar_t>(s), out.data_ptr<scalar_t>(),
                           x.size(0), x.size(1), x.size(2) * x.size(3));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cbam_apply_bwd_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                  const std::optional<at::Tensor>& c_in,
                                                                  const std::optional<at::Tensor>& s_in,
                                                                  bool input_grad) {
  const char* op = "cbam_apply_bwd";
  cbam_check_x(op, x_in, at::kCPU);
  cbam_check_gates(op, x_in, c_in, s_in);
  cbam_check_like(op, "grad", grad_in, x_in, x_in.sizes());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor dx = at::empty(input_grad ? x.sizes() : at::IntArrayRef{0}, x.options());
  at::Tensor dc = at::empty(c.has_value() ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options());
  at::Tensor ds = at::empty(s.has_value() ? at::IntArrayRef{B, H, W} : at::IntArrayRef{0}, x.options());
  if (!input_grad && !c.has_value() && !s.has_value()) return {dx, dc, ds};
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_apply_bwd_cpu", [&] {
    SROPS_CBAM_CALL(apply_backward_kernel<scalar_t>, grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c),
                                    opt_ptr<scalar_t>(s), input_grad ? dx.data_ptr<scalar_t>() : nullptr,
                                    c.has_value() ? dc.data_ptr<scalar_t>() : nullptr,
                                    s.has_value() ? ds.data_ptr<scalar_t>() : nullptr, B, C, H * W);
  });
  return {dx, dc, ds};
}

at::Tensor cbam_input_bwd_cpu(const at::Tensor& grad_in, const std::optional<at::Tensor>& c_in,
                              const std::optional<at::Tensor>& s_in, const std::optional<at::Tensor>& gp_in,
                              const std::optional<at::Tensor>& sarg_in, const std::optional<at::Tensor>& gst_in,
                              const std::optional<at::Tensor>& carg_in, bool avg, bool max) {
  cbam_check_input_backward("cbam_input_bwd", grad_in, c_in, s_in, gp_in, sarg_in, gst_in, carg_in, avg, max,
                            at::kCPU);
  const at::Tensor grad = grad_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in), gp = opt_contig(gp_in), sarg = opt_contig(sarg_in);
  const auto gst = opt_contig(gst_in), carg = opt_contig(carg_in);
  const int64_t B = grad.size(0), C = grad.size(1), N = grad.size(2) * grad.size(3);
  at::Tensor dx = at::empty(grad.sizes(), grad.options());
  SROPS_DISPATCH_CBAM(grad.scalar_type(), "cbam_input_bwd_cpu", [&] {
    SROPS_CBAM_CALL(input_backward_kernel<scalar_t>, grad.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c),
                    opt_ptr<scalar_t>(s), opt_ptr<scalar_t>(gp), opt_ptr<int64_t>(sarg), opt_ptr<scalar_t>(gst),
                    gst.has_value() && max ? carg->data_ptr<int64_t>() : nullptr, dx.data_ptr<scalar_t>(), B, C, N,
                    avg, max);
  });
  return dx;
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("cbam_channel_pool_fwd", &cbam_channel_pool_fwd_cpu);
  m.impl("cbam_channel_pool_bwd", &cbam_channel_pool_bwd_cpu);
  m.impl("cbam_spatial_pool_fwd", &cbam_spatial_pool_fwd_cpu);
  m.impl("cbam_spatial_pool_bwd", &cbam_spatial_pool_bwd_cpu);
  m.impl("cbam_apply_fwd", &cbam_apply_fwd_cpu);
  m.impl("cbam_apply_bwd", &cbam_apply_bwd_cpu);
  m.impl("cbam_input_bwd", &cbam_input_bwd_cpu);
}

}  // namespace srops
