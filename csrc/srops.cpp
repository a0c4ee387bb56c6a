// The one list of srops operator schemas. Kernels register against these names
// with TORCH_LIBRARY_IMPL in csrc/<op>/<op>_{cpu.cpp,cuda.cu}; autograd and fake
// (meta) implementations are attached in Python (srops/ops/<op>/ext_impl.py), except the autograd of
// nonlocal_attention_fwd, which is C++ (csrc/nonlocal_attention/nonlocal_attention_autograd.cpp).
#include <Python.h>
#include <torch/library.h>

#include "common/cpu_isa.h"
#include "info.h"

TORCH_LIBRARY(srops, m) {
  // Naming rule for every srops:: op, here and in Python (torch.library.custom_op): <op>_fwd / <op>_bwd,
  // <op> the op or, for a multi-pass op, the pass (cbam_channel_pool_fwd/_bwd; cbam_input_bwd has no
  // forward). A second implementation sharing the namespace puts its backend before the suffix:
  // nonlocal_attention_triton_fwd/_bwd (srops/ops/nonlocal_attention/triton_impl.py). The private build
  // facts (_compiled_with_cuda, ...) are not ops of the library's API and keep their names.

  // Covariance pooling: x [B, C, M] (float32/float64) -> [B, C, C].
  m.def("covpool_fwd(Tensor x) -> Tensor");
  m.def("covpool_bwd(Tensor grad, Tensor x) -> Tensor");

  // Covariance pooling + Newton–Schulz square root (csrc/covpool/covpool_sqrtm.h):
  // x [B, C, M] -> out [B, C, C] (or [B, C] with row_mean) and what the backward needs.
  m.def(
      "covpool_sqrtm_fwd(Tensor x, int iterations, float eps, bool row_mean) -> "
      "(Tensor out, Tensor mean, Tensor a, Tensor states, Tensor trace)");
  m.def(
      "covpool_sqrtm_bwd(Tensor grad, Tensor x, Tensor mean, Tensor a, Tensor states, Tensor trace, Tensor out, "
      "bool row_mean) -> Tensor");

  // Fused CBAM (csrc/cbam/cbam.h): x [B, C, H, W], c [B, C], s [B, H, W]; argmax int64.
  m.def("cbam_channel_pool_fwd(Tensor x, bool avg, bool max) -> (Tensor stats, Tensor argmax)");
  m.def("cbam_channel_pool_bwd(Tensor grad_stats, Tensor x, Tensor argmax, bool avg, bool max) -> Tensor");
  m.def("cbam_spatial_pool_fwd(Tensor x, Tensor? c) -> (Tensor pooled, Tensor argmax)");
  m.def("cbam_spatial_pool_bwd(Tensor grad_pooled, Tensor x, Tensor? c, Tensor argmax, bool input_grad=True)"
        " -> (Tensor dx, Tensor dc)");
  m.def("cbam_apply_fwd(Tensor x, Tensor? c, Tensor? s) -> Tensor");
  m.def("cbam_apply_bwd(Tensor grad, Tensor x, Tensor? c, Tensor? s, bool input_grad=True)"
        " -> (Tensor dx, Tensor dc, Tensor ds)");
  m.def("cbam_input_bwd(Tensor grad, Tensor? c, Tensor? s, Tensor? grad_pooled, Tensor? spatial_argmax,"
        " Tensor? grad_stats, Tensor? channel_argmax, bool avg, bool max) -> Tensor");

  // Flash non-local attention (csrc/nonlocal_attention/nonlocal_attention.h): q [B, N, d], k [B, M, d],
  // v [B, M, dv] -> out [B, N, dv] and the row log-sum-exp [B, N] the backward recomputes from.
  m.def("nonlocal_attention_fwd(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor out, Tensor lse)");
  m.def("nonlocal_attention_bwd(Tensor grad, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, float scale)"
        " -> (Tensor dq, Tensor dk, Tensor dv)");

  // Build facts (no tensors: catch-all kernels).
  m.def("_compiled_with_cuda() -> bool", &srops::compiled_with_cuda);
  m.def("_cuda_compile_version() -> int", &srops::cuda_compile_version);
  // The x86 paths the CPU kernels take, after SROPS_CPU_NO_AVX512 / SROPS_CPU_NO_AVX2 / ATEN_CPU_CAPABILITY.
  m.def("_cpu_kernel_paths() -> str", &srops::cpu_kernel_paths);
}

// `import srops._C` loads this library (and with it the registrations above).
extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", "srops compiled operators", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
