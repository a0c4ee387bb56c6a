// Register-tiled GEMM for the CPU covpool_sqrtm kernels (see gemm_cpu.h).
// Each tile keeps kRows accumulator vectors in registers while k runs, so every
// element of B is loaded once per tile and every element of A is broadcast.
#include "covpool_sqrtm/gemm_cpu.h"

#include "common/cpu_isa.h"

#include <cstdlib>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SROPS_X86_AVX512 1
#endif

namespace srops {
namespace cpu {
namespace {

inline bool skip_tile(bool upper_only, int64_t i0, int64_t j0, int64_t vw) { return upper_only && j0 + vw <= i0; }

// Portable path: the compiler vectorises the inner loop at the build's ISA level.
template <typename T>
void gemm_generic(T* c, const T* a, const T* b, int64_t rows, int64_t cols, int64_t k, int64_t lda, int64_t ldb,
                  int64_t ldc, bool upper_only) {
  constexpr int64_t VW = tile_cols<T>();
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    for (int64_t j0 = 0; j0 < cols; j0 += VW) {
      if (skip_tile(upper_only, i0, j0, VW)) continue;
      T acc[kRows][VW] = {};
      for (int64_t kk = 0; kk < k; ++kk) {
        const T* brow = b + kk * ldb + j0;
        for (int64_t r = 0; r < kRows; ++r) {
          const T av = a[(i0 + r) * lda + kk];
#pragma omp simd
          for (int64_t j = 0; j < VW; ++j) acc[r][j] += av * brow[j];
        }
      }
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t j = 0; j < VW; ++j) c[(i0 + r) * ldc + j0 + j] = acc[r][j];
    }
  }
}

#ifdef SROPS_X86_AVX512
__attribute__((target("avx512f,fma"))) void gemm_avx512_f32(float* c, const float* a, const float* b, int64_t rows,
                                                              int64_t cols, int64_t k, int64_t lda, int64_t ldb,
                                                              int64_t ldc, bool upper_only) {
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      if (skip_tile(upper_only, i0, j0, 16)) continue;
      __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
      const float* a0 = a + i0 * lda;
      for (int64_t kk = 0; kk < k; ++kk) {
        const __m512 bv = _mm512_loadu_ps(b + kk * ldb + j0);
        c0 = _mm512_fmadd_ps(_mm512_set1_ps(a0[kk]), bv, c0);
        c1 = _mm512_fmadd_ps(_mm512_set1_ps(a0[lda + kk]), bv, c1);
        c2 = _mm512_fmadd_ps(_mm512_set1_ps(a0[2 * lda + kk]), bv, c2);
        c3 = _mm512_fmadd_ps(_mm512_set1_ps(a0[3 * lda + kk]), bv, c3);
        c4 = _mm512_fmadd_ps(_mm512_set1_ps(a0[4 * lda + kk]), bv, c4);
        c5 = _mm512_fmadd_ps(_mm512_set1_ps(a0[5 * lda + kk]), bv, c5);
        c6 = _mm512_fmadd_ps(_mm512_set1_ps(a0[6 * lda + kk]), bv, c6);
        c7 = _mm512_fmadd_ps(_mm512_set1_ps(a0[7 * lda + kk]), bv, c7);
      }
      float* cp = c + i0 * ldc + j0;
      _mm512_storeu_ps(cp, c0);
      _mm512_storeu_ps(cp + ldc, c1);
      _mm512_storeu_ps(cp + 2 * ldc, c2);
      _mm512_storeu_ps(cp + 3 * ldc, c3);
      _mm512_storeu_ps(cp + 4 * ldc, c4);
      _mm512_storeu_ps(cp + 5 * ldc, c5);
      _mm512_storeu_ps(cp + 6 * ldc, c6);
      _mm512_storeu_ps(cp + 7 * ldc, c7);
    }
  }
}

__attribute__((target("avx512f,fma"))) void gemm_avx512_f64(double* c, const double* a, const double* b, int64_t rows,
                                                              int64_t cols, int64_t k, int64_t lda, int64_t ldb,
                                                              int64_t ldc, bool upper_only) {
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    for (int64_t j0 = 0; j0 < cols; j0 += 8) {
      if (skip_tile(upper_only, i0, j0, 8)) continue;
      __m512d c0 = _mm512_setzero_pd(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
      const double* a0 = a + i0 * lda;
      for (int64_t kk = 0; kk < k; ++kk) {
        const __m512d bv = _mm512_loadu_pd(b + kk * ldb + j0);
        c0 = _mm512_fmadd_pd(_mm512_set1_pd(a0[kk]), bv, c0);
        c1 = _mm512_fmadd_pd(_mm512_set1_pd(a0[lda + kk]), bv, c1);
        c2 = _mm512_fmadd_pd(_mm512_set1_pd(a0[2 * lda + kk]), bv, c2);
        c3 = _mm512_fmadd_pd(_mm512_set1_pd(a0[3 * lda + kk]), bv, c3);
        c4 = _mm512_fmadd_pd(_mm512_set1_pd(a0[4 * lda + kk]), bv, c4);
        c5 = _mm512_fmadd_pd(_mm512_set1_pd(a0[5 * lda + kk]), bv, c5);
        c6 = _mm512_fmadd_pd(_mm512_set1_pd(a0[6 * lda + kk]), bv, c6);
        c7 = _mm512_fmadd_pd(_mm512_set1_pd(a0[7 * lda + kk]), bv, c7);
      }
      double* cp = c + i0 * ldc + j0;
      _mm512_storeu_pd(cp, c0);
      _mm512_storeu_pd(cp + ldc, c1);
      _mm512_storeu_pd(cp + 2 * ldc, c2);
      _mm512_storeu_pd(cp + 3 * ldc, c3);
      _mm512_storeu_pd(cp + 4 * ldc, c4);
      _mm512_storeu_pd(cp + 5 * ldc, c5);
      _mm512_storeu_pd(cp + 6 * ldc, c6);
      _mm512_storeu_pd(cp + 7 * ldc, c7);
    }
  }
}

// AVX-512 F + FMA where the CPU has them, unless the environment caps the level (common/cpu_isa.h:
// SROPS_CPU_NO_AVX512=1, SROPS_CPU_NO_AVX2=1 or ATEN_CPU_CAPABILITY=avx2/default force the portable path)
bool has_avx512() { return cpu_isa() >= CpuIsa::avx512; }
#endif

}  // namespace

const char* gemm_path() {
#ifdef SROPS_X86_AVX512
  if (has_avx512()) return "avx512";
#endif
  return "generic";
}

template <>
void gemm<float>(float* c, const float* a, const float* b, int64_t rows, int64_t cols, int64_t k, int64_t lda,
                 int64_t ldb, int64_t ldc, bool upper_only) {
#ifdef SROPS_X86_AVX512
  if (has_avx512()) return gemm_avx512_f32(c, a, b, rows, cols, k, lda, ldb, ldc, upper_only);
#endif
  gemm_generic<float>(c, a, b, rows, cols, k, lda, ldb, ldc, upper_only);
}

template <>
void gemm<double>(double* c, const double* a, const double* b, int64_t rows, int64_t cols, int64_t k, int64_t lda,
                  int64_t ldb, int64_t ldc, bool upper_only) {
#ifdef SROPS_X86_AVX512
  if (has_avx512()) return gemm_avx512_f64(c, a, b, rows, cols, k, lda, ldb, ldc, upper_only);
#endif
  gemm_generic<double>(c, a, b, rows, cols, k, lda, ldb, ldc, upper_only);
}

}  // namespace cpu

const char* gemm_cpu_path() { return cpu::gemm_path(); }

}  // namespace srops
