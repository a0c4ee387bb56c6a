#include "covpool/centred_gemm.h"

#include <c10/util/Exception.h>

namespace srops {

at::Tensor gram_of_chunks(const at::Tensor& chunks, int64_t M) {
  TORCH_CHECK_VALUE(chunks.dim() == 4 && chunks.is_contiguous() && M > 0,
                    "srops::gram_of_chunks: expected contiguous chunks [B, S, C, L] and M > 0, got shape ",
                    chunks.sizes(), " and M = ", M);
  const int64_t B = chunks.size(0), S = chunks.size(1), C = chunks.size(2), L = chunks.size(3);
  const at::Tensor flat = chunks.view({B * S, C, L});
  const at::Tensor gram = at::bmm(flat, flat.transpose(1, 2)).view({B, S, C, C}).sum(1);
  return ((at::triu(gram) + at::triu(gram, 1).transpose(1, 2)) / static_cast<double>(M)).contiguous();
}

}  // namespace srops
