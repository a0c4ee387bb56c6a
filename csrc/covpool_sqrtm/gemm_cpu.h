// Small dense GEMM for the CPU covpool_sqrtm kernels: C = A·B (row-major), register-tiled
// 8 rows × one vector of columns, with an AVX-512 path chosen at run time.
#pragma once

#include <cstdint>

namespace srops {
namespace cpu {

// Columns per tile: one 64-byte vector. Row counts must be multiples of kRows and
// column counts multiples of tile_cols<T>(); callers pad with zeros.
constexpr int64_t kRows = 8;
template <typename T>
constexpr int64_t tile_cols() {
  return 64 / static_cast<int64_t>(sizeof(T));
}

// C[i, j] = sum_k A[i, k] B[k, j] for i < rows, j < cols (C is overwritten).
// upper_only: skip tiles lying wholly below the diagonal (for products known to be
// symmetric; the caller mirrors the upper triangle afterwards).
template <typename T>
void gemm(T* c, const T* a, const T* b, int64_t rows, int64_t cols, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
          bool upper_only);

}  // namespace cpu
}  // namespace srops
