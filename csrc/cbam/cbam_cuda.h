// CUDA entry points of the fused CBAM ops (cbam_cuda.cu), registered in cbam_cuda_register.cpp. Only
// declared in CUDA builds.
#pragma once

#ifdef SROPS_WITH_CUDA
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace srops {

std::tuple<at::Tensor, at::Tensor> cbam_channel_pool_fwd_cuda(const at::Tensor& x_in, bool avg, bool max);
at::Tensor cbam_channel_pool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x, const at::Tensor& argmax_in,
                                      bool avg, bool max);
std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_fwd_cuda(const at::Tensor& x_in,
                                                              const std::optional<at::Tensor>& c_in);
std::tuple<at::Tensor, at::Tensor> cbam_spatial_pool_bwd_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                              const std::optional<at::Tensor>& c_in,
                                                              const at::Tensor& argmax_in, bool input_grad);
at::Tensor cbam_apply_fwd_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& c_in,
                               const std::optional<at::Tensor>& s_in);
std::tuple<at::Tensor, at::Tensor, at::Tensor> cbam_apply_bwd_cuda(const at::Tensor& grad_in,
                                                                   const at::Tensor& x_in,
                                                                   const std::optional<at::Tensor>& c_in,
                                                                   const std::optional<at::Tensor>& s_in,
                                                                   bool input_grad);
at::Tensor cbam_input_bwd_cuda(const at::Tensor& grad_in, const std::optional<at::Tensor>& c_in,
                               const std::optional<at::Tensor>& s_in, const std::optional<at::Tensor>& gp_in,
                               const std::optional<at::Tensor>& sarg_in, const std::optional<at::Tensor>& gst_in,
                               const std::optional<at::Tensor>& carg_in, bool avg, bool max);

}  // namespace srops
#endif  // SROPS_WITH_CUDA
