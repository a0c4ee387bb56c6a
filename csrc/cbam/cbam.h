// Fused CBAM: channel and spatial attention in three passes over x [B, C, H, W].
//
//   pass 1  cbam_channel_pool_fwd(x, avg, max) -> stats [B, C, P], argmax [B, C] (int64; [0] without max)
//           P = avg + max statistics over H*W per channel, avg first; argmax is the flat H*W index
//           of the first maximal element (lowest index; the first NaN if any).
//   pass 2  cbam_spatial_pool_fwd(x, c?) -> pooled [B, 2, H, W], argmax [B, H, W] (int64)
//           over the channels of y = x * c (c [B, C], or y = x): pooled[:, 0] = max, pooled[:, 1] = mean
//           (the official order); argmax is the first maximal channel.
//   pass 3  cbam_apply_fwd(x, c?, s?) -> x * c * s, c [B, C], s [B, H, W]; y = x * c is never written.
// The backward ops route a max gradient wholly to the saved argmax (torch.max(dim)'s rule).
// Fused backward: cbam_apply_bwd and cbam_spatial_pool_bwd with input_grad=false give only
// the gate gradients (dc, ds; dx is returned empty), and cbam_input_bwd then writes the whole
// dx in one pass from grad, the gates and the pooled gradients:
//   dx = c * (grad * s + grad_mean / C + [ch == spatial_argmax] grad_max)
//        + grad_avg / (H*W) + [hw == channel_argmax] grad_cmax.
// x, c, s, grads: float32, float64, float16 or bfloat16 (the last two computed in float32), one dtype.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <optional>
#include <tuple>

namespace srops {

inline void cbam_check_x(const char* op, const at::Tensor& x, at::DeviceType device) {
  TORCH_CHECK_VALUE(x.dim() == 4, "srops::", op, ": x must be a 4-D tensor [B, C, H, W], got shape ", x.sizes());
  const auto t = x.scalar_type();
  TORCH_CHECK_TYPE(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, "srops::", op,
                   ": x must be float16, bfloat16, float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_TYPE(x.device().type() == device, "srops::", op, ": x must be on ", device, ", got ", x.device());
  TORCH_CHECK_VALUE(x.numel() > 0, "srops::", op, ": x must be non-empty, got shape ", x.sizes());
}

// t must be on x's device, of x's dtype and of the given shape.
inline void cbam_check_like(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& x,
                            at::IntArrayRef shape) {
  TORCH_CHECK_TYPE(t.device() == x.device(), "srops::", op, ": ", arg, " must be on ", x.device(), " like x, got ",
                   t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), "srops::", op, ": ", arg, " must have dtype ",
                   x.scalar_type(), " like x, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes() == shape, "srops::", op, ": ", arg, " must have shape ", shape, ", got ", t.sizes());
}

inline void cbam_check_index(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& x,
                             at::IntArrayRef shape) {
  TORCH_CHECK_TYPE(t.device() == x.device(), "srops::", op, ": ", arg, " must be on ", x.device(), " like x, got ",
                   t.device());
  TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, "srops::", op, ": ", arg, " must have dtype int64, got ",
                   t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes() == shape, "srops::", op, ": ", arg, " must have shape ", shape, ", got ", t.sizes());
}

// Whether the index-range checks below run for tensors on `dev`. They read the indices' minimum and
// maximum: cheap on the CPU, but on CUDA a device sync each (2–4 per fused backward) that also rules out
// CUDA-graph capture, so there they run only with SROPS_DEBUG_CHECKS=1 in the environment. The CUDA
// kernels only compare indices with positions (cbam_kernels.cuh): an index out of range drops its
// gradient term and never reads or writes outside a tensor.
inline bool cbam_index_range_checked(at::DeviceType dev) {
  if (dev != at::kCUDA) return true;
  const char* flag = std::getenv("SROPS_DEBUG_CHECKS");
  return flag != nullptr && flag[0] == '1';
}

// t's values lie in [0, bound); `what` names the range in the message (e.g. "channel indices in [0, C)").
// Skipped on CUDA unless SROPS_DEBUG_CHECKS=1 (see cbam_index_range_checked).
inline void cbam_check_index_range(const char* op, const char* arg, const at::Tensor& t, int64_t bound,
                                   const char* what) {
  if (t.numel() == 0 || !cbam_index_range_checked(t.device().type())) return;
  TORCH_CHECK_VALUE(t.min().item<int64_t>() >= 0 && t.max().item<int64_t>() < bound, "srops::", op, ": ", arg,
                    " must hold ", what, ", got values outside it");
}

// Shared argument checks of the six ops (used by the CPU and CUDA entry points).
inline void cbam_check_channel_pool(const char* op, const at::Tensor& x, bool avg, bool max, at::DeviceType dev) {
  cbam_check_x(op, x, dev);
  TORCH_CHECK_VALUE(avg || max, "srops::", op, ": at least one of avg and max must be true, got neither");
}

inline void cbam_check_gates(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& c,
                             const std::optional<at::Tensor>& s) {
  if (c.has_value()) cbam_check_like(op, "c", *c, x, {x.size(0), x.size(1)});
  if (s.has_value()) cbam_check_like(op, "s", *s, x, {x.size(0), x.size(2), x.size(3)});
}

// Arguments of cbam_input_bwd: grad is x-shaped; c, s as in cbam_check_gates; grad_pooled and
// spatial_argmax come together, grad_stats [B, C, avg + max] with channel_argmax [B, C] when max.
inline void cbam_check_input_backward(const char* op, const at::Tensor& grad, const std::optional<at::Tensor>& c,
                                      const std::optional<at::Tensor>& s, const std::optional<at::Tensor>& grad_pooled,
                                      const std::optional<at::Tensor>& spatial_argmax,
                                      const std::optional<at::Tensor>& grad_stats,
                                      const std::optional<at::Tensor>& channel_argmax, bool avg, bool max,
                                      at::DeviceType dev) {
  cbam_check_x(op, grad, dev);
  cbam_check_gates(op, grad, c, s);
  const int64_t B = grad.size(0), C = grad.size(1), H = grad.size(2), W = grad.size(3);
  TORCH_CHECK_VALUE(grad_pooled.has_value() == spatial_argmax.has_value(), "srops::", op,
                    ": grad_pooled and spatial_argmax must be given together, got only one");
  if (grad_pooled.has_value()) {
    cbam_check_like(op, "grad_pooled", *grad_pooled, grad, {B, 2, H, W});
    cbam_check_index(op, "spatial_argmax", *spatial_argmax, grad, {B, H, W});
    cbam_check_index_range(op, "spatial_argmax", *spatial_argmax, C, "channel indices in [0, C)");
  }
  if (grad_stats.has_value()) {
    TORCH_CHECK_VALUE(avg || max, "srops::", op, ": at least one of avg and max must be true, got neither");
    cbam_check_like(op, "grad_stats", *grad_stats, grad, {B, C, int64_t(avg) + int64_t(max)});
    TORCH_CHECK_VALUE(channel_argmax.has_value() == max, "srops::", op, ": channel_argmax must be given exactly when max",
                      " is true, got max=", max, " and ", channel_argmax.has_value() ? "a" : "no", " channel_argmax");
    if (max) {
      cbam_check_index(op, "channel_argmax", *channel_argmax, grad, {B, C});
      cbam_check_index_range(op, "channel_argmax", *channel_argmax, H * W, "indices in [0, H*W)");
    }
  }
}

// Data pointer of an optional gate, or nullptr when the gate is absent.
template <typename T>
const T* opt_ptr(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

inline std::optional<at::Tensor> opt_contig(const std::optional<at::Tensor>& t) {
  return t.has_value() ? std::optional<at::Tensor>(t->contiguous()) : std::nullopt;
}

// Every CBAM kernel takes the four float dtypes (half/bfloat16 computed in float32).
#define SROPS_DISPATCH_CBAM(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

std::tuple<at::Tensor, at::Tensor> cbam_channel_pool_fwd_cpu(const at::Tensor& x, bool avg, bool max);
at::Tensor cbam_channel_pool_bwd_cpu(const at::Tensor& grad_stats, const at::Tensor& x, const at::Tensor& argmax,
                                     bool avg, bool max);
std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_fwd_cpu(const at::Tensor& x, const std::optional<at::Tensor>& c);
std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_bwd_cpu(const at::Tensor& grad_pooled, const at::Tensor& x,
                                                             const std::optional<at::Tensor>& c,
                                                             const at::Tensor& argmax, bool input_grad);
at::Tensor cbam_apply_fwd_cpu(const at::Tensor& x, const std::optional<at::Tensor>& c,
                              const std::optional<at::Tensor>& s);
std::tuple<at::Tensor, at::Tensor, at::Tensor> cbam_apply_bwd_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                  const std::optional<at::Tensor>& c,
                                                                  const std::optional<at::Tensor>& s,
                                                                  bool input_grad);
at::Tensor cbam_input_bwd_cpu(const at::Tensor& grad, const std::optional<at::Tensor>& c,
                              const std::optional<at::Tensor>& s, const std::optional<at::Tensor>& grad_pooled,
                              const std::optional<at::Tensor>& spatial_argmax,
                              const std::optional<at::Tensor>& grad_stats,
                              const std::optional<at::Tensor>& channel_argmax, bool avg, bool max);

}  // namespace srops
