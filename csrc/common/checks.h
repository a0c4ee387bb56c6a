// Argument checks for srops kernels. Every message reads
//   "srops::<op>: <arg> must <expectation>, got <actual>"
// and maps to a Python ValueError (shape/value) or TypeError (dtype/device).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace srops {

inline void check_dim(const char* op, const char* arg, const at::Tensor& t, int64_t dim, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == dim, "srops::", op, ": ", arg, " must be a ", dim, "-D tensor ", layout,
                    ", got shape ", t.sizes());
}

inline void check_float_or_double(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_TYPE(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, "srops::", op, ": ", arg,
                   " must be float32 or float64, got ", t.scalar_type());
}

inline void check_floating(const char* op, const char* arg, const at::Tensor& t) {
  const auto s = t.scalar_type();
  TORCH_CHECK_TYPE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16, "srops::", op, ": ",
                   arg, " must be a floating-point tensor (float16, bfloat16, float32 or float64), got ", s);
}

inline void check_same_dtype(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK_TYPE(t.scalar_type() == ref.scalar_type(), "srops::", op, ": ", arg, " must have dtype ",
                   ref.scalar_type(), ", got ", t.scalar_type());
}

inline void check_device_type(const char* op, const char* arg, const at::Tensor& t, at::DeviceType type) {
  TORCH_CHECK_TYPE(t.device().type() == type, "srops::", op, ": ", arg, " must be on ", type, ", got ", t.device());
}

inline void check_nonempty(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.numel() > 0, "srops::", op, ": ", arg, " must be non-empty, got shape ", t.sizes());
}

inline void check_shape(const char* op, const char* arg, const at::Tensor& t, at::IntArrayRef expected) {
  TORCH_CHECK_VALUE(t.sizes() == expected, "srops::", op, ": ", arg, " must have shape ", expected, ", got ",
                    t.sizes());
}

}  // namespace srops
