// The host side of one CUDA forward step: validating a batch against the
// model and the device KV view, and packing everything the step's kernels
// read (tokens, positions, the live page tables, prefill tiles, decode items,
// sampling parameters) into one staging area whose layout mirrors a fixed
// device region. Plain C++ (no CUDA): CudaTransformerModel copies the used
// prefix of the staging area (pinned) to the device with one
// cudaMemcpyAsync on its stream; CPU tests (cuda_step_inputs_test.cc) check
// the packing and the padding of decode graphs in CI.
//
// Layout (StepLayout, fixed by the limits so captured graphs keep their
// addresses): int32 tokens[T], positions[T], token_req[T], last_index[R],
// req_page_begin[R + 1], decode_tokens[R], tiles[T] (PrefillTile), then
// DeviceSamplingParams[R] and int32 pages[R * max_pages] last, so the bytes
// to upload are everything up to the last page used.
//
// Padding (a decode graph captured for a bucket of B >= R requests):
// requests R..B-1 are dummies with one token 0 at position 0 of the padding
// page 0 (kvcache/kv_layout.h), greedy; their results are ignored.
//
// Thread-compatible (pure functions over caller-owned buffers).
#ifndef COLO_ENGINE_MODEL_CUDA_STEP_INPUTS_H_
#define COLO_ENGINE_MODEL_CUDA_STEP_INPUTS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/model/forward.h"
#include "engine/model/model_config.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/dtype.h"
#include "kernels/cuda/sampling_plan.h"

namespace colo::engine {

struct StepLimits {
  int64_t max_tokens = 0;    // new tokens per step
  int64_t max_requests = 0;  // requests per step
  int64_t max_context = 0;   // positions per request
  int32_t page_size = 1;     // of the KV view
};

// Byte offsets of each array in the inputs region.
struct StepLayout {
  size_t tokens = 0;
  size_t positions = 0;
  size_t token_req = 0;
  size_t last_index = 0;
  size_t page_begin = 0;
  size_t decode_tokens = 0;
  size_t tiles = 0;
  size_t params = 0;
  size_t pages = 0;
  size_t total = 0;
  int64_t max_pages = 0;  // per request

  static StepLayout For(const StepLimits& limits);
};

// What one packed step runs.
struct StepPlan {
  int32_t num_tokens = 0;    // including padding
  int32_t num_requests = 0;  // including padding
  int32_t real_requests = 0;
  int32_t num_tiles = 0;     // prefill tiles
  int32_t num_decode = 0;    // decode items (requests with one new token)
  int32_t decode_splits = 1;
  int32_t max_kv_len = 0;    // longest request after the step
  size_t upload_bytes = 0;   // prefix of the region to copy
  bool all_decode = false;   // every real request has one new token
  // Requests whose rows need the host sampler from the start (kSampleHost).
  int32_t num_host_rows = 0;
};

// Checks a device KV view against the model: one layer per model layer with
// its sliding flag, KV heads, head_dim and `kv_dtype`; a full_to_swa map
// when there are sliding layers. Returns the slot counts of the pools.
// INVALID_ARGUMENT naming the mismatch.
absl::StatusOr<KvViewSlots> ValidateDeviceKvView(const ModelConfig& config, const KvCacheView& kv,
                                                 kernels::cuda::DType kv_dtype);

// Validates `batch` (as TransformerModel does, against the limits and the
// pools) and packs it into `staging` (StepLayout::For(limits).total bytes).
// pad_to > 0 pads a decode-only batch to that many requests (a graph
// bucket; INVALID_ARGUMENT when the batch is not decode-only or larger).
// `decode_splits` is the split-K factor recorded in the plan. Requests
// without `pages` get theirs from `slots`, which must then follow the page
// structure (INVALID_ARGUMENT otherwise).
absl::StatusOr<StepPlan> PackStep(absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
                                  const ModelConfig& config, kernels::cuda::DType kv_dtype,
                                  const StepLimits& limits, int32_t pad_to,
                                  int32_t decode_splits, void* staging);

}  // namespace colo::engine

#endif  // COLO_ENGINE_MODEL_CUDA_STEP_INPUTS_H_
