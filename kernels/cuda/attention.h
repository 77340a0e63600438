// Paged attention on the device over a step's batch (CUDA counterpart of
// kernels/cpu/paged_attention.h), in the FlashAttention-2 style: tiles of
// keys are loaded once into shared memory for up to kAttnRows (token, head)
// rows that share a KV head (GQA), scores and an online softmax run in float
// registers, and nothing of size keys x queries is ever materialised.
//
//   PrefillAttention  prefill/extend: one block per PrefillTile (a few
//                     consecutive tokens of one request, attention_plan.h)
//                     and head group; causal, sliding window, sinks.
//   DecodeAttention   one new token per request, split-K flash-decoding:
//                     grid (request, head group, split); with num_splits > 1
//                     each split writes its partial (max, sum, unnormalised
//                     output) to `workspace` and a merge kernel combines them
//                     (attention_plan.h has the algebra).
//
// Layouts: q is [tokens][*] with token t's head h at
// q[t * q_token_stride + h * head_dim] (a fused qkv row works); out is
// [tokens][num_heads][head_dim] (rows of tokens the call does not cover are
// left alone); k_pool / v_pool are [slots][num_kv_heads][head_dim] of
// kv_dtype (kvcache/kv_layout.h). q and out have the compute dtype `dtype`;
// kv_dtype is that dtype or fp8 e4m3 (anything else is INVALID_ARGUMENT).
// Keys are read through the batch's page tables (PagedBatch), so only the
// live part of each request's table exists on the device. Scores are
// q . k * scale in float; a sliding layer (window > 0) attends positions
// [pos - window + 1, pos]; sinks (per query head, float, device) add
// exp(sink) to each row's softmax denominator (GPT-OSS); nullptr = none.
//
// Preconditions the host checks (CudaTransformerModel::Validate): slots
// inside the pools, tiles from PlanPrefillTiles with tokens_per_tile =
// MakeRowLayout(...).tokens_per_block, decode items with one token each,
// head_dim even and <= kAttnMaxHeadDim, num_heads % num_kv_heads == 0.
// Keys whose layer slot is negative (an unmapped SWA slot) are skipped.
// Results do not depend on the rest of the batch (each block's arithmetic
// depends only on its rows and keys; the split count is a launch argument).
// Errors: INVALID_ARGUMENT for bad shapes, dtypes or a small workspace; the
// launch error otherwise.
#ifndef COLO_KERNELS_CUDA_ATTENTION_H_
#define COLO_KERNELS_CUDA_ATTENTION_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/dtype.h"

namespace colo::kernels::cuda {

struct AttentionParams {
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  float scale = 1.0f;   // usually 1 / sqrt(head_dim)
  int32_t window = 0;   // sliding window in tokens; 0 = full attention
  const float* sinks = nullptr;  // [num_heads] on the device, or nullptr
};

absl::Status PrefillAttention(const void* q, int64_t q_token_stride, DType dtype,
                              const PagedBatch& batch, const PrefillTile* tiles,
                              int32_t num_tiles, const void* k_pool, const void* v_pool,
                              DType kv_dtype, const AttentionParams& params, void* out,
                              cudaStream_t stream);

// decode_tokens: [num_items] batch token of each decode request (device).
// workspace: at least DecodeWorkspaceFloats(num_items, num_splits, ...)
// floats of device memory (may be nullptr when num_splits == 1).
absl::Status DecodeAttention(const void* q, int64_t q_token_stride, DType dtype,
                             const PagedBatch& batch, const int32_t* decode_tokens,
                             int32_t num_items, int32_t num_splits, const void* k_pool,
                             const void* v_pool, DType kv_dtype, const AttentionParams& params,
                             float* workspace, size_t workspace_floats, void* out,
                             cudaStream_t stream);

}  // namespace colo::kernels::cuda

#endif  // COLO_KERNELS_CUDA_ATTENTION_H_
