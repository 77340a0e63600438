// Paged causal attention over a slot-indexed KV pool, with grouped-query
// attention and optional sliding window. Serves both prefill/extend (several
// new queries after a cached prefix) and decode (one query).
//
// KV pool layout (kvcache/kv_layout.h): k_pool / v_pool are
// [num_slots][num_kv_heads][head_dim] float32; the token at position j of the
// sequence lives at slot key_slots[j].
//
// Queries: q is [num_queries][num_heads][head_dim]; query i sits at position
// first_position + i and attends keys j with
//   max(0, pos - window + 1) <= j <= pos     (window > 0)
//   0 <= j <= pos                            (window == 0, full attention).
// Only key_slots entries inside that range are read. Query head h uses KV
// head h / (num_heads / num_kv_heads). out: [num_queries][num_heads][head_dim].
//
// Each (query, head) output is computed independently with a fixed operation
// order (scores, max, exp-sum in float, weighted V sum), so the result does
// not depend on batching or threading: it is a function of the query, the
// attended keys/values and the position only. On CPUs with AVX-512 and
// head_dim in {16, 32, 64, 128} (AttentionUsesAvx512) the scores of 16 keys
// are reduced together and the V sum uses two accumulators (even and odd
// keys); elsewhere a portable path runs. The two agree within float
// rounding, not bit for bit, so one machine always uses the same path.
//
// Attention sinks (gpt-oss): a learned logit per query head that joins the
// softmax denominator but attends no value: with scores s_j and sink z,
// p_j = exp(s_j - m) / (sum_i exp(s_i - m) + exp(z - m)), m = max(max s, z).
// A sink of -infinity (the default) changes nothing, bit for bit.
//
// Preconditions (callers validate): every slot read is in [0, num_slots);
// num_heads % num_kv_heads == 0. Thread-safe.
#ifndef COLO_KERNELS_CPU_PAGED_ATTENTION_H_
#define COLO_KERNELS_CPU_PAGED_ATTENTION_H_

#include <cstdint>
#include <limits>

namespace colo {
namespace kernels {

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;      // usually 1 / sqrt(head_dim)
  int64_t window = 0;      // sliding window in tokens; 0 = full attention
};

// One (query, head) pair. `scratch` must hold pos + 1 floats (or window).
// `sink` is the query head's sink logit (-infinity: none).
void AttendOne(const float* q_head, int64_t position, const int32_t* key_slots,
               const float* k_pool, const float* v_pool, int kv_head,
               const AttentionShape& shape, float* scratch, float* out_head,
               float sink = -std::numeric_limits<float>::infinity());

// True when AttendOne takes the AVX-512 path for this head_dim.
bool AttentionUsesAvx512(int head_dim);

// All queries and heads of one sequence (single-threaded). `sinks`:
// [num_heads] sink logits, or null for none.
void PagedAttention(const float* q, int64_t num_queries,
                    int64_t first_position, const int32_t* key_slots,
                    const float* k_pool, const float* v_pool,
                    const AttentionShape& shape, float* out,
                    const float* sinks = nullptr);

// The first key position query `position` attends.
inline int64_t FirstAttendedPosition(int64_t position, int64_t window) {
  if (window <= 0) return 0;
  int64_t lo = position - window + 1;
  return lo < 0 ? 0 : lo;
}

}  // namespace kernels
}  // namespace colo

#endif  // COLO_KERNELS_CPU_PAGED_ATTENTION_H_
