// Argument checks of srops::covpool_sqrtm_fwd/bwd (CPU and CUDA).
#include <cmath>

#include "common/checks.h"
#include "covpool/covpool_sqrtm.h"

namespace srops {
namespace {

constexpr int64_t kMaxIterations = 256;  // as srops.ops.covpool.frontend.MAX_ITERATIONS

void check_compute(const char* op, const char* arg, const at::Tensor& t, const at::Tensor& x) {
  const at::ScalarType want = x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK_TYPE(t.scalar_type() == want, "srops::", op, ": ", arg, " must have dtype ", want, " (the compute dtype of ",
                   x.scalar_type(), " x), got ", t.scalar_type());
}

}  // namespace

void check_sqrtm_fwd_args(const at::Tensor& x, int64_t iterations, double eps, at::DeviceType device) {
  const char* op = "covpool_sqrtm_fwd";
  check_dim(op, "x", x, 3, "[B, C, M]");
  if (device == at::kCPU) {
    check_float_or_double(op, "x", x);
  } else {
    TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()) && x.scalar_type() != at::kFloat8_e4m3fn &&
                         x.scalar_type() != at::kFloat8_e5m2,
                     "srops::", op, ": x must be float16, bfloat16, float32 or float64, got ", x.scalar_type());
  }
  check_device_type(op, "x", x, device);
  check_nonempty(op, "x", x);
  TORCH_CHECK_VALUE(iterations >= 1 && iterations <= kMaxIterations, "srops::", op, ": iterations must be in [1, ",
                    kMaxIterations, "], got ", iterations);
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "srops::", op, ": eps must be finite and >= 0, got ", eps);
}

void check_sqrtm_bwd_args(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& mean, const at::Tensor& a,
                          const at::Tensor& states, const at::Tensor& trace, const at::Tensor& out, bool row_mean,
                          at::DeviceType device) {
  const char* op = "covpool_sqrtm_bwd";
  check_dim(op, "x", x, 3, "[B, C, M]");
  check_device_type(op, "x", x, device);
  check_nonempty(op, "x", x);
  const int64_t B = x.size(0), C = x.size(1);
  if (device == at::kCPU) check_float_or_double(op, "x", x);
  const std::pair<const char*, const at::Tensor*> rest[] = {
      {"grad", &grad}, {"mean", &mean}, {"a", &a}, {"states", &states}, {"trace", &trace}, {"out", &out}};
  for (const auto& [name, t] : rest) {
    check_device_type(op, name, *t, device);
    check_compute(op, name, *t, x);
  }
  if (row_mean) {
    check_shape(op, "grad", grad, {B, C});
    check_shape(op, "out", out, {B, C});
  } else {
    check_shape(op, "grad", grad, {B, C, C});
    check_shape(op, "out", out, {B, C, C});
  }
  check_shape(op, "mean", mean, {B, C});
  check_shape(op, "a", a, {B, C, C});
  check_shape(op, "trace", trace, {B});
  check_dim(op, "states", states, 4, "[B, 3(N-1), C, C]");
  TORCH_CHECK_VALUE(states.size(0) == B && states.size(1) % 3 == 0 && states.size(2) == C && states.size(3) == C,
                    "srops::", op, ": states must have shape [", B, ", 3(N-1), ", C, ", ", C, "], got ",
                    states.sizes());
}

}  // namespace srops
