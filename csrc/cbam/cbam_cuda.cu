// Launchers of the fused CBAM ops on CUDA (see cbam.h): argument checks, device guard, stream,
// allocation and launch configuration (cbam_launch.h); kernels in cbam_kernels.cuh, registrations in
// cbam_cuda_register.cpp.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cstdint>

#include "cbam/cbam.h"
#include "cbam/cbam_cuda.h"
#include "cbam/cbam_kernels.cuh"
#include "common/cuda_device.cuh"

namespace srops {
namespace {

using namespace cbam_kernels;  // NOLINT: the launchers below name every kernel

// One block per (b, c) row.
unsigned row_blocks(const char* op, int64_t rows) {
  TORCH_CHECK_VALUE(rows <= int64_t(INT32_MAX), "srops::", op, ": B*C must be at most 2^31 - 1, got ", rows);
  return static_cast<unsigned>(rows);
}

dim3 grid2d(int64_t rows, int64_t N) {
  const PositionGrid g = position_grid(rows, N, kCbamThreads);
  return dim3(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y));
}

template <typename T>
uintptr_t address(const T* p) {
  return reinterpret_cast<uintptr_t>(p);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> cbam_channel_pool_fwd_cuda(const at::Tensor& x_in, bool avg, bool max) {
  cbam_check_channel_pool("cbam_channel_pool_fwd", x_in, avg, max, at::kCUDA);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
  at::Tensor stats = at::empty({B, C, int64_t(avg) + int64_t(max)}, x.options());
  at::Tensor argmax = at::empty(max ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options().dtype(at::kLong));
  const auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t rows = B * C;
  // Enough blocks for about four per multiprocessor, each part at least 4 elements per thread.
  const int64_t parts = channel_pool_parts(rows, N, current_device_desc());
  const auto acc = at::toOpMathType(x.scalar_type());
  at::Tensor ws = at::empty({parts > 1 ? 2 * rows * parts : 0}, x.options().dtype(acc));
  at::Tensor ws_idx = at::empty({parts > 1 ? rows * parts : 0}, x.options().dtype(at::kLong));
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_channel_pool_fwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    A* part_sum = parts > 1 ? ws.data_ptr<A>() : nullptr;
    A* part_max = parts > 1 ? part_sum + rows * parts : nullptr;
    int64_t* part_idx = parts > 1 ? ws_idx.data_ptr<int64_t>() : nullptr;
    int64_t* am = max ? argmax.data_ptr<int64_t>() : nullptr;
    const dim3 grid(row_blocks("cbam_channel_pool_fwd", rows), static_cast<unsigned>(parts));
    channel_pool_kernel<scalar_t, A><<<grid, kCbamThreads, 0, stream>>>(
        x.data_ptr<scalar_t>(), stats.data_ptr<scalar_t>(), am, part_sum, part_max, part_idx, N, avg, max);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (parts > 1) {
      const unsigned blocks = static_cast<unsigned>(grid_stride_blocks(rows));
      channel_pool_combine_kernel<scalar_t, A><<<blocks, kCbamThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), part_sum, part_max, part_idx, stats.data_ptr<scalar_t>(), am, rows, parts, N, avg,
          max);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {stats, argmax};
}

at::Tensor cbam_channel_pool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x, const at::Tensor& argmax_in,
                                      bool avg, bool max) {
  const char* op = "cbam_channel_pool_bwd";
  cbam_check_channel_pool(op, x, avg, max, at::kCUDA);
  const int64_t B = x.size(0), C = x.size(1), N = x.size(2) * x.size(3);
  cbam_check_like(op, "grad_stats", grad_in, x, {B, C, int64_t(avg) + int64_t(max)});
  cbam_check_index(op, "argmax", argmax_in, x, max ? at::IntArrayRef{B, C} : at::IntArrayRef{0});
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor grad = grad_in.contiguous(), argmax = argmax_in.contiguous();
  at::Tensor dx = at::empty(x.sizes(), x.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_channel_pool_bwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    channel_pool_backward_kernel<scalar_t, A><<<grid2d(B * C, N), kCbamThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), max ? argmax.data_ptr<int64_t>() : nullptr, dx.data_ptr<scalar_t>(), B * C, N, avg,
        max);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_fwd_cuda(const at::Tensor& x_in,
                                                              const std::optional<at::Tensor>& c_in) {
  cbam_check_x("cbam_spatial_pool_fwd", x_in, at::kCUDA);
  cbam_check_gates("cbam_spatial_pool_fwd", x_in, c_in, std::nullopt);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const auto c = opt_contig(c_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor pooled = at::empty({B, 2, H, W}, x.options());
  at::Tensor argmax = at::empty({B, H, W}, x.options().dtype(at::kLong));
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_spatial_pool_fwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* pp = pooled.data_ptr<scalar_t>();
    const VectorPlan vp = cbam_vector_plan(H * W, sizeof(scalar_t), vec_aligned({address(xp), address(pp)}));
    const auto kernel = vp.aligned ? spatial_pool_kernel<scalar_t, A, true> : spatial_pool_kernel<scalar_t, A, false>;
    kernel<<<grid2d(B, vp.groups), kCbamThreads, 0, stream>>>(xp, opt_ptr<scalar_t>(c), pp,
                                                              argmax.data_ptr<int64_t>(), B, C, H * W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {pooled, argmax};
}

std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                              const std::optional<at::Tensor>& c_in,
                                                              const at::Tensor& argmax_in, bool input_grad) {
  const char* op = "cbam_spatial_pool_bwd";
  cbam_check_x(op, x_in, at::kCUDA);
  cbam_check_gates(op, x_in, c_in, std::nullopt);
  const int64_t B = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3), N = H * W;
  cbam_check_like(op, "grad_pooled", grad_in, x_in, {B, 2, H, W});
  cbam_check_index(op, "argmax", argmax_in, x_in, {B, H, W});
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous(), argmax = argmax_in.contiguous();
  const auto c = opt_contig(c_in);
  at::Tensor dx = at::empty(input_grad ? x.sizes() : at::IntArrayRef{0}, x.options());
  at::Tensor dc = at::empty(c.has_value() ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_spatial_pool_bwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    if (input_grad) {
      spatial_pool_backward_dx_kernel<scalar_t, A><<<grid2d(B, N), kCbamThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), opt_ptr<scalar_t>(c), argmax.data_ptr<int64_t>(), dx.data_ptr<scalar_t>(), B, C,
          N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (c.has_value()) {
      spatial_pool_backward_dc_kernel<scalar_t, A><<<row_blocks(op, B * C), kCbamThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(), dc.data_ptr<scalar_t>(), C, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {dx, dc};
}

at::Tensor cbam_apply_fwd_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& c_in,
                               const std::optional<at::Tensor>& s_in) {
  cbam_check_x("cbam_apply_fwd", x_in, at::kCUDA);
  cbam_check_gates("cbam_apply_fwd", x_in, c_in, s_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in);
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t rows = x.size(0) * x.size(1), N = x.size(2) * x.size(3);
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_apply_fwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t *xp = x.data_ptr<scalar_t>(), *sp = opt_ptr<scalar_t>(s);
    scalar_t* op = out.data_ptr<scalar_t>();
    const VectorPlan vp = cbam_vector_plan(N, sizeof(scalar_t), vec_aligned({address(xp), address(sp), address(op)}));
    const auto kernel = vp.aligned ? apply_kernel<scalar_t, A, true> : apply_kernel<scalar_t, A, false>;
    kernel<<<grid2d(rows, vp.groups), kCbamThreads, 0, stream>>>(xp, opt_ptr<scalar_t>(c), sp, op, rows, x.size(1), N);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> cbam_apply_bwd_cuda(const at::Tensor& grad_in,
                                                                   const at::Tensor& x_in,
                                                                   const std::optional<at::Tensor>& c_in,
                                                                   const std::optional<at::Tensor>& s_in,
                                                                   bool input_grad) {
  const char* op = "cbam_apply_bwd";
  cbam_check_x(op, x_in, at::kCUDA);
  cbam_check_gates(op, x_in, c_in, s_in);
  cbam_check_like(op, "grad", grad_in, x_in, x_in.sizes());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), grad = grad_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), N = H * W;
  at::Tensor dx = at::empty(input_grad ? x.sizes() : at::IntArrayRef{0}, x.options());
  at::Tensor dc = at::empty(c.has_value() ? at::IntArrayRef{B, C} : at::IntArrayRef{0}, x.options());
  at::Tensor ds = at::empty(s.has_value() ? at::IntArrayRef{B, H, W} : at::IntArrayRef{0}, x.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(x.scalar_type(), "cbam_apply_bwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    if (input_grad || s.has_value()) {
      const scalar_t *gptr = grad.data_ptr<scalar_t>(), *xp = x.data_ptr<scalar_t>(), *sp = opt_ptr<scalar_t>(s);
      scalar_t* dxp = input_grad ? dx.data_ptr<scalar_t>() : nullptr;
      scalar_t* dsp = s.has_value() ? ds.data_ptr<scalar_t>() : nullptr;
      const VectorPlan vp = cbam_vector_plan(
          N, sizeof(scalar_t), vec_aligned({address(gptr), address(xp), address(sp), address(dxp), address(dsp)}));
      const auto kernel =
          vp.aligned ? apply_backward_dx_kernel<scalar_t, A, true> : apply_backward_dx_kernel<scalar_t, A, false>;
      kernel<<<grid2d(B, vp.groups), kCbamThreads, 0, stream>>>(gptr, xp, opt_ptr<scalar_t>(c), sp, dxp, dsp, B, C,
                                                                N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (c.has_value()) {
      apply_backward_dc_kernel<scalar_t, A><<<row_blocks(op, B * C), kCbamThreads, 0, stream>>>(
          grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), opt_ptr<scalar_t>(s), dc.data_ptr<scalar_t>(), C, N);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {dx, dc, ds};
}

at::Tensor cbam_input_bwd_cuda(const at::Tensor& grad_in, const std::optional<at::Tensor>& c_in,
                               const std::optional<at::Tensor>& s_in, const std::optional<at::Tensor>& gp_in,
                               const std::optional<at::Tensor>& sarg_in, const std::optional<at::Tensor>& gst_in,
                               const std::optional<at::Tensor>& carg_in, bool avg, bool max) {
  cbam_check_input_backward("cbam_input_bwd", grad_in, c_in, s_in, gp_in, sarg_in, gst_in, carg_in, avg, max,
                            at::kCUDA);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous();
  const auto c = opt_contig(c_in), s = opt_contig(s_in), gp = opt_contig(gp_in), sarg = opt_contig(sarg_in);
  const auto gst = opt_contig(gst_in), carg = opt_contig(carg_in);
  const int64_t B = grad.size(0), C = grad.size(1), N = grad.size(2) * grad.size(3);
  at::Tensor dx = at::empty(grad.sizes(), grad.options());
  const auto stream = at::cuda::getCurrentCUDAStream();
  SROPS_DISPATCH_CBAM(grad.scalar_type(), "cbam_input_bwd_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    const scalar_t* gptr = grad.data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    const VectorPlan vp = cbam_vector_plan(N, sizeof(scalar_t), vec_aligned({address(gptr), address(dxp)}));
    const auto kernel =
        vp.aligned ? input_backward_kernel<scalar_t, A, true> : input_backward_kernel<scalar_t, A, false>;
    kernel<<<grid2d(B, vp.groups), kCbamThreads, 0, stream>>>(
        gptr, opt_ptr<scalar_t>(c), opt_ptr<scalar_t>(s), opt_ptr<scalar_t>(gp), opt_ptr<int64_t>(sarg),
        opt_ptr<scalar_t>(gst), gst.has_value() && max ? carg->data_ptr<int64_t>() : nullptr, dxp, B, C, N, avg, max);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return dx;
}

}  // namespace srops
