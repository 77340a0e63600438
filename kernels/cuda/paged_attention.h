// Paged causal attention on the device (CUDA counterpart of
// kernels/cpu/paged_attention.h), for a whole batch of tokens in one launch:
// prefill, extend over a cached prefix and decode are the same call.
//
// KV pools (kvcache/kv_layout.h): k_pool / v_pool are
// [num_slots][num_kv_heads][head_dim] float32.
//
// Token t of the batch belongs to the sequence whose slot row is
//   slot_table + token_row[t] * slot_table_stride
// (the request-to-token table layout: row[position] = full-pool slot), sits
// at position positions[t], and attends keys j with
//   max(0, pos - window + 1) <= j <= pos   (window > 0; 0 = full attention).
// The key at position j lives at slot row[j]; for a sliding-window layer
// pass full_to_swa (full slot -> SWA slot) and the SWA pools: the slot read
// is full_to_swa[row[j]]. Only in-window positions are read.
//
// q: token t, head h at q[t * q_token_stride + h * head_dim] (a fused qkv row
// works: q_token_stride = row width). out: [num_tokens][num_heads][head_dim].
// Query head h uses KV head h / (num_heads / num_kv_heads) (GQA).
//
// Each (token, head) is one thread block: scores, max, exp-sum in float and
// the weighted V sum in key-tile order; results match the CPU kernel within
// float rounding (the normalisation is applied once at the end instead of
// per key) and do not depend on the rest of the batch.
//
// Preconditions (callers validate on the host, as TransformerModel does):
// every slot read is inside its pool, every in-window full_to_swa entry is
// mapped (!= kNoSwaSlot). Device pointers; work is queued on `stream`.
// Errors: INVALID_ARGUMENT for bad shapes (num_heads % num_kv_heads != 0,
// head_dim > kMaxAttentionHeadDim, ...); the launch error otherwise.
#ifndef COLO_KERNELS_CUDA_PAGED_ATTENTION_H_
#define COLO_KERNELS_CUDA_PAGED_ATTENTION_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"

namespace colo::kernels::cuda {

inline constexpr int kMaxAttentionHeadDim = 512;

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;  // usually 1 / sqrt(head_dim)
  int64_t window = 0;  // sliding window in tokens; 0 = full attention
};

// Where the tokens of a batch find their keys. All device pointers.
struct TokenSlots {
  int64_t num_tokens = 0;
  const int64_t* positions = nullptr;  // [num_tokens]
  const int32_t* token_row = nullptr;  // [num_tokens] row of slot_table
  const int32_t* slot_table = nullptr;  // [rows][slot_table_stride]
  int64_t slot_table_stride = 0;
  // Sliding-window layers: full slot -> SWA slot; nullptr for full layers.
  const int32_t* full_to_swa = nullptr;
};

absl::Status PagedAttention(const float* q, int64_t q_token_stride,
                            const TokenSlots& tokens, const float* k_pool,
                            const float* v_pool, const AttentionShape& shape,
                            float* out, cudaStream_t stream);

// Writes each token's K and V (token t: k_src[t * src_token_stride + e],
// v_src likewise, e < num_kv_heads * head_dim) at its slot
// row[positions[t]] (or full_to_swa of it) of k_pool / v_pool.
// Same preconditions as PagedAttention for the slots written.
absl::Status WritePagedKv(const float* k_src, const float* v_src,
                          int64_t src_token_stride, const TokenSlots& tokens,
                          int64_t slot_elements, float* k_pool, float* v_pool,
                          cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_PAGED_ATTENTION_H_
