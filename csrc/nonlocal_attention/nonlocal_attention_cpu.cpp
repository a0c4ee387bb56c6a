// C++ CPU kernels of flash non-local attention (see nonlocal_attention.h), two pairs chosen by shape
// (use_lane_forward/use_lane_backward below): the row-tile kernels (nonlocal_attention_cpu_kernels.h) and the
// query-lane kernels (nonlocal_attention_cpu_lanes.h). The inputs are copied into zero-padded contiguous
// blocks (O((N + M)·d) memory), so the inner loops run over whole vectors: for the row-tile kernels queries
// padded to a multiple of kRows, keys to a multiple of the key block, feature dims to the feature vector's
// lanes, k and v also transposed ([d, M]) for the score products; for the query-lane kernels q and the output
// gradient transposed ([d, N]) with N padded to the vector's lanes.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "common/checks.h"
#include "common/cpu_isa.h"
#include "nonlocal_attention/nonlocal_attention.h"

#define SROPS_NL_COMMA ,

namespace srops {
namespace {

constexpr int64_t kRows = 4;         // query rows of a register tile
constexpr int kBlockBytes = 256;     // bytes of keys in a key block (64 float / 32 double keys)
constexpr int kGroupBytes = 64;      // keys are padded to 64 bytes; a last block may be 1-3 such groups
constexpr int64_t kQueryBlock = 64;  // queries of a forward work unit, which share each key block
constexpr int64_t kMinUnits = 8;     // backward: split keys into chunks until B·chunks reaches this
// Feature dims are padded to 64 bytes, the widest vector (narrower feature vectors for d ≤ 8 made
// GCC keep the AVX-512 kernels' accumulators on the stack: d = 8 ran 1.5x slower).
constexpr int kFeatureBytes = 64;
constexpr int64_t kLaneKeys = 8;  // query-lane kernels: keys of a chunk, whose scores stay in registers

constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

template <typename T>
constexpr int64_t block_keys() {
  return kBlockBytes / int64_t(sizeof(T));
}

template <typename T>
constexpr int64_t group_keys() {
  return kGroupBytes / int64_t(sizeof(T));
}

// Compiled three times: baseline x86-64 (SSE2), AVX2 + FMA, AVX-512F; chosen at run time by ATen's
// CPU capability (so ATEN_CPU_CAPABILITY=default/avx2 selects the portable paths). FMA contraction
// is allowed here (the C++ standard mode turns it off by default).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpsabi"
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define SROPS_NL_X86 1
#pragma GCC push_options
#pragma GCC target("avx512f,fma")
#define SROPS_NL_ISA avx512
#define SROPS_NL_VBYTES 64
#include "nonlocal_attention/nonlocal_attention_cpu_kernels.h"
#include "nonlocal_attention/nonlocal_attention_cpu_lanes.h"
#undef SROPS_NL_VBYTES
#undef SROPS_NL_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SROPS_NL_ISA avx2
#define SROPS_NL_VBYTES 32
#include "nonlocal_attention/nonlocal_attention_cpu_kernels.h"
#include "nonlocal_attention/nonlocal_attention_cpu_lanes.h"
#undef SROPS_NL_VBYTES
#undef SROPS_NL_ISA
#pragma GCC pop_options
#endif
#define SROPS_NL_ISA base
#define SROPS_NL_VBYTES 16
#include "nonlocal_attention/nonlocal_attention_cpu_kernels.h"
#include "nonlocal_attention/nonlocal_attention_cpu_lanes.h"
#undef SROPS_NL_VBYTES
#undef SROPS_NL_ISA
#pragma GCC diagnostic pop
#pragma GCC pop_options

enum class Isa { base, avx2, avx512 };

// ATen's capability, capped by srops' own level (common/cpu_isa.h: SROPS_CPU_NO_AVX512, SROPS_CPU_NO_AVX2).
Isa isa() {
  static const Isa chosen = [] {
    Isa level = Isa::base;
#ifdef SROPS_NL_X86
    const std::string cap = at::get_cpu_capability();
    if (cap == "AVX512" && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) {
      level = Isa::avx512;
    } else if ((cap == "AVX512" || cap == "AVX2") && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma")) {
      level = Isa::avx2;
    }
#endif
    const CpuIsa cap_srops = cpu_isa();
    if (cap_srops == CpuIsa::base) return Isa::base;
    if (cap_srops == CpuIsa::avx2 && level == Isa::avx512) return Isa::avx2;
    return level;
  }();
  return chosen;
}

#ifdef SROPS_NL_X86
#define SROPS_NL_CALL(KERNEL, ...)                               \
  switch (isa()) {                                               \
    case Isa::avx512: avx512::KERNEL(__VA_ARGS__); break;        \
    case Isa::avx2: avx2::KERNEL(__VA_ARGS__); break;            \
    default: base::KERNEL(__VA_ARGS__);                          \
  }
#else
#define SROPS_NL_CALL(KERNEL, ...) base::KERNEL(__VA_ARGS__)
#endif

// Queries per vector of the chosen instruction set: the query-lane kernels' tile.
template <typename T>
int64_t lane_queries() {
  switch (isa()) {
    case Isa::avx512: return 64 / int64_t(sizeof(T));
    case Isa::avx2: return 32 / int64_t(sizeof(T));
    default: return 16 / int64_t(sizeof(T));
  }
}

// The query-lane backward's row length for N queries (qT, gT, dq [·, Np], P and dS [keys, Np]): N rounded up to
// whole vectors, plus one vector where that is a multiple of 8 cache lines. A backward step reads the same
// column of up to ~100 such rows; at a stride of 8·64 bytes or a multiple (N = 1024 floats: 4 KiB) they fall
// into at most 8 of the L1 cache's 64 sets and evict each other (N = 1024, d = 32 ran 1.8x slower than 576).
template <typename T>
int64_t lane_stride(int64_t N) {
  const int64_t lanes = lane_queries<T>(), n = round_up(N, lanes);
  return (n * int64_t(sizeof(T))) % (8 * 64) == 0 ? n + lanes : n;
}

// Which kernels run. The query-lane kernels (nonlocal_attention_cpu_lanes.h) pay d + dv products and one exp
// per query and key, the row-tile kernels (nonlocal_attention_cpu_kernels.h) add per-row costs for each key
// block (horizontal max and sum, a scalar exp) that small heads and few keys do not amortise, but reuse each
// loaded key for 4 queries and each block for 64. Measured (AVX-512, one thread, the allocator keeping freed
// memory): the lane forward 1.4-1.7x faster for d <= 32 at N·M from 144·36 to 16384·4096, 7-10% slower at
// d = 64 and 128; the lane backward 1.3-1.6x faster at N <= 256 (d 8-32) and 1.1x at d = 8 (N up to 16384),
// 2-11% faster at N = 576 (d 16 and 32, with lane_stride's padding), 10-15% slower at N = 1024 and 6-7% at
// 2304 (d 16 and 32). SROPS_NL_CPU_KERNEL=lanes or rows forces one pair (for tests and benchmarks; any other
// value is refused).
enum class NlKernel { rule, lanes, rows };

NlKernel forced_kernel() {
  const char* e = std::getenv("SROPS_NL_CPU_KERNEL");
  if (e == nullptr || *e == '\0') return NlKernel::rule;
  const std::string v(e);
  TORCH_CHECK_VALUE(v == "lanes" || v == "rows",
                    "srops: SROPS_NL_CPU_KERNEL must be 'lanes' or 'rows' (or unset), got '", v, "'");
  return v == "lanes" ? NlKernel::lanes : NlKernel::rows;
}

bool use_lane_forward(int64_t d, int64_t dv) {
  const NlKernel k = forced_kernel();
  return k == NlKernel::rule ? std::max(d, dv) <= 32 : k == NlKernel::lanes;
}

bool use_lane_backward(int64_t N, int64_t d, int64_t dv) {
  const NlKernel k = forced_kernel();
  const int64_t width = std::max(d, dv);
  return k == NlKernel::rule ? width <= 32 && (N <= 768 || width <= 8) : k == NlKernel::lanes;
}

// t [B, rows, cols] → contiguous [B, rows_to, cols_to], zero-padded at the end of both dims.
bool is_half(const at::Tensor& t) { return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16; }

at::Tensor pad(const at::Tensor& t, int64_t rows_to, int64_t cols_to) {
  if (rows_to == t.size(1) && cols_to == t.size(2)) return t.contiguous();  // no copy when none is needed
  return at::constant_pad_nd(t, {0, cols_to - t.size(2), 0, rows_to - t.size(1)}, 0).contiguous();
}

void check_inputs(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  check_dim(op, "q", q, 3, "[B, N, d]");
  check_dim(op, "k", k, 3, "[B, M, d]");
  check_dim(op, "v", v, 3, "[B, M, dv]");
  check_floating(op, "q", q);
  check_same_dtype(op, "k", k, q);
  check_same_dtype(op, "v", v, q);
  check_device_type(op, "q", q, at::kCPU);
  check_device_type(op, "k", k, at::kCPU);
  check_device_type(op, "v", v, at::kCPU);
  TORCH_CHECK_VALUE(k.size(0) == q.size(0) && v.size(0) == q.size(0), "srops::", op,
                    ": q, k, v must share the batch size, got ", q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK_VALUE(k.size(2) == q.size(2), "srops::", op, ": k must have q's head dim ", q.size(2), ", got ",
                    k.sizes());
  TORCH_CHECK_VALUE(v.size(1) == k.size(1), "srops::", op, ": v must have k's key count ", k.size(1), ", got ",
                    v.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> nonlocal_attention_fwd_cpu(const at::Tensor& q, const at::Tensor& k,
                                                              const at::Tensor& v, double scale) {
  const char* op = "nonlocal_attention_fwd";
  check_inputs(op, q, k, v);
  const int64_t B = q.size(0), N = q.size(1), M = k.size(1), d = q.size(2), dv = v.size(2);
  // float16/bfloat16: computed in float32 (the query-lane kernels read the inputs into float32 scratch, the
  // row-tile ones take float32 copies), the output rounded once; lse is float32.
  const bool half = is_half(q);
  at::Tensor out = at::empty({B, N, dv}, q.options());
  at::Tensor lse = at::empty({B, N}, q.options().dtype(half ? at::kFloat : q.scalar_type()));
  if (out.numel() == 0) return {out, lse.fill_(M == 0 ? -std::numeric_limits<double>::infinity() : 0.0)};
  TORCH_CHECK_VALUE(M > 0, "srops::", op, ": k must have at least one key, got shape ", k.sizes());
  if (use_lane_forward(d, dv)) {
    const at::Tensor qc = q.contiguous(), kc = k.contiguous(), vc = v.contiguous();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "nonlocal_attention_fwd_cpu_lanes", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      SROPS_NL_CALL(lane_forward_kernel<acc_t SROPS_NL_COMMA scalar_t>, qc.data_ptr<scalar_t>(),
                    kc.data_ptr<scalar_t>(), vc.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>(),
                    B, N, M, d, dv, static_cast<acc_t>(scale));
    });
    return {out, lse};
  }
  if (half) {
    auto res = nonlocal_attention_fwd_cpu(q.to(at::kFloat), k.to(at::kFloat), v.to(at::kFloat), scale);
    return {out.copy_(std::get<0>(res)), std::get<1>(res)};
  }
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "nonlocal_attention_fwd_cpu", [&] {
    const int64_t fl = kFeatureBytes / int64_t(sizeof(scalar_t));
    const int64_t Np = round_up(N, kRows), Mp = round_up(M, group_keys<scalar_t>());
    const int64_t dp = round_up(d, fl), dvp = round_up(dv, fl);
    const at::Tensor qp = pad(q, Np, dp);
    const at::Tensor kT = pad(k, Mp, d).transpose(1, 2).contiguous();
    const at::Tensor vp = pad(v, Mp, dvp);
    const auto s = static_cast<scalar_t>(scale);
    SROPS_NL_CALL(forward_kernel<scalar_t SROPS_NL_COMMA kFeatureBytes>, qp.data_ptr<scalar_t>(),
                  kT.data_ptr<scalar_t>(), vp.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                  lse.data_ptr<scalar_t>(), B, N, M, Np, Mp, d, dp, dv, dvp, s);
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> nonlocal_attention_bwd_cpu(const at::Tensor& grad,
                                                                          const at::Tensor& q, const at::Tensor& k,
                                                                          const at::Tensor& v, const at::Tensor& out,
                                                                          const at::Tensor& lse, double scale) {
  const char* op = "nonlocal_attention_bwd";
  check_inputs(op, q, k, v);
  const int64_t B = q.size(0), N = q.size(1), M = k.size(1), d = q.size(2), dv = v.size(2);
  check_same_dtype(op, "grad", grad, q);
  check_same_dtype(op, "out", out, q);
  const bool half = is_half(q);
  TORCH_CHECK_TYPE(lse.scalar_type() == (half ? at::kFloat : q.scalar_type()), "srops::", op, ": lse must have dtype ",
                   half ? at::kFloat : q.scalar_type(), ", got ", lse.scalar_type());
  check_device_type(op, "grad", grad, at::kCPU);
  check_device_type(op, "out", out, at::kCPU);
  check_device_type(op, "lse", lse, at::kCPU);
  check_shape(op, "grad", grad, {B, N, dv});
  check_shape(op, "out", out, {B, N, dv});
  check_shape(op, "lse", lse, {B, N});
  at::Tensor dq = at::empty_like(q, at::MemoryFormat::Contiguous);
  at::Tensor dk = at::empty_like(k, at::MemoryFormat::Contiguous);
  at::Tensor dvt = at::empty_like(v, at::MemoryFormat::Contiguous);
  if (B == 0 || N == 0 || M == 0) return {dq.zero_(), dk.zero_(), dvt.zero_()};
  if (use_lane_backward(N, d, dv)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, q.scalar_type(), "nonlocal_attention_bwd_cpu_lanes", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const int64_t Np = lane_stride<acc_t>(N);
      const at::Tensor qc = q.contiguous(), gc = grad.contiguous(), oc = out.contiguous(), lc = lse.contiguous();
      const at::Tensor kc = k.contiguous(), vc = v.contiguous();
      const int64_t chunks = (M + kLaneKeys - 1) / kLaneKeys;
      const int64_t parts = std::min(chunks, (kMinUnits + B - 1) / B);
      at::Tensor dq_part = at::empty({parts == 1 ? 0 : parts, B, d, Np}, lse.options());
      SROPS_NL_CALL(lane_backward_kernel<acc_t SROPS_NL_COMMA scalar_t>, qc.data_ptr<scalar_t>(),
                    gc.data_ptr<scalar_t>(), oc.data_ptr<scalar_t>(), lc.data_ptr<acc_t>(), kc.data_ptr<scalar_t>(),
                    vc.data_ptr<scalar_t>(), dq.data_ptr<scalar_t>(), dq_part.data_ptr<acc_t>(),
                    dk.data_ptr<scalar_t>(), dvt.data_ptr<scalar_t>(), B, N, M, Np, d, dv, parts,
                    static_cast<acc_t>(scale));
      if (parts > 1) dq.copy_(dq_part.sum(0).narrow(2, 0, N).transpose(1, 2).mul(scale));
    });
    return {dq, dk, dvt};
  }
  if (half) {  // the row-tile kernels on float32 copies
    const auto f = at::kFloat;
    auto res = nonlocal_attention_bwd_cpu(grad.to(f), q.to(f), k.to(f), v.to(f), out.to(f), lse, scale);
    return {dq.copy_(std::get<0>(res)), dk.copy_(std::get<1>(res)), dvt.copy_(std::get<2>(res))};
  }
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "nonlocal_attention_bwd_cpu", [&] {
    const int64_t fl = kFeatureBytes / int64_t(sizeof(scalar_t)), bk = block_keys<scalar_t>();
    const int64_t Np = round_up(N, kRows), Mp = round_up(M, group_keys<scalar_t>());
    const int64_t dp = round_up(d, fl), dvp = round_up(dv, fl);
    const at::Tensor qp = pad(q, Np, dp);
    const at::Tensor kp = pad(k, Mp, dp);
    const at::Tensor kT = pad(k, Mp, d).transpose(1, 2).contiguous();
    const at::Tensor vT = pad(v, Mp, dv).transpose(1, 2).contiguous();
    const at::Tensor gp = pad(grad, Np, dvp);
    // Δ = rowsum(grad ∘ out); padding rows get lse = Δ = 0 (their probabilities are masked anyway).
    at::Tensor delta = at::zeros({B, Np}, q.options());
    at::Tensor lsep = Np == N ? lse.contiguous() : at::constant_pad_nd(lse, {0, Np - N}, 0).contiguous();
    {
      const at::Tensor oc = out.contiguous();
      const scalar_t* o = oc.data_ptr<scalar_t>();
      const scalar_t* gr = gp.data_ptr<scalar_t>();
      scalar_t* de = delta.data_ptr<scalar_t>();
      at::parallel_for(0, B * N, at::internal::GRAIN_SIZE / std::max<int64_t>(dv, 1) + 1, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t b = r / N, i = r % N;
          const scalar_t* gi = gr + (b * Np + i) * dvp;
          const scalar_t* oi = o + r * dv;
          scalar_t total = 0;
          for (int64_t c = 0; c < dv; ++c) total += gi[c] * oi[c];
          de[b * Np + i] = total;
        }
      });
    }
    const int64_t key_blocks = (Mp + bk - 1) / bk;
    const int64_t want = std::min(key_blocks, (kMinUnits + B - 1) / B);
    const int64_t chunk_keys = (key_blocks + want - 1) / want * bk;
    const int64_t chunks = (Mp + chunk_keys - 1) / chunk_keys;
    at::Tensor dq_part = at::empty({chunks, B, Np, dp}, q.options());
    const auto s = static_cast<scalar_t>(scale);
    SROPS_NL_CALL(backward_kernel<scalar_t SROPS_NL_COMMA kFeatureBytes>, qp.data_ptr<scalar_t>(),
                  kp.data_ptr<scalar_t>(), kT.data_ptr<scalar_t>(), vT.data_ptr<scalar_t>(), gp.data_ptr<scalar_t>(),
                  lsep.data_ptr<scalar_t>(), delta.data_ptr<scalar_t>(), dq_part.data_ptr<scalar_t>(),
                  dk.data_ptr<scalar_t>(), dvt.data_ptr<scalar_t>(), B, N, M, Np, Mp, d, dp, dv, dvp, chunk_keys,
                  chunks, s);
    // dq = scale · Σ_chunks dq_part, in chunk order.
    const scalar_t* part = dq_part.data_ptr<scalar_t>();
    scalar_t* dqo = dq.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, at::internal::GRAIN_SIZE / (d * chunks) + 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / N, i = r % N;
        for (int64_t c = 0; c < d; ++c) {
          scalar_t total = 0;
          for (int64_t ch = 0; ch < chunks; ++ch) total += part[((ch * B + b) * Np + i) * dp + c];
          dqo[r * d + c] = total * s;
        }
      }
    });
  });
  return {dq, dk, dvt};
}

TORCH_LIBRARY_IMPL(srops, CPU, m) {
  m.impl("nonlocal_attention_fwd", &nonlocal_attention_fwd_cpu);
  m.impl("nonlocal_attention_bwd", &nonlocal_attention_bwd_cpu);
}

const char* nonlocal_cpu_path() {
  switch (isa()) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "base";
  }
}

}  // namespace srops
