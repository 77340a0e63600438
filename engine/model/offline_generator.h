// Offline generation on a TransformerModel with a SimpleKvCache: prefill each
// prompt, then decode up to max_new_tokens per prompt. Used by the
// colo-generate-offline driver (parity tests against transformers), the
// batch-invariance tests and the benchmarks; the engine's scheduler does the
// real continuous batching.
//
// With `batch_size` > 1, up to that many requests run in each Forward call
// (prefill of new requests mixed with decode of running ones, as a scheduler
// would); results must equal batch_size = 1 bit for bit (see forward.h).
// Not thread-safe.
#ifndef COLO_ENGINE_MODEL_OFFLINE_GENERATOR_H_
#define COLO_ENGINE_MODEL_OFFLINE_GENERATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "kernels/cpu/sampling.h"

namespace colo {
namespace engine {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // at least one token
  int64_t max_new_tokens = 16;
  kernels::SamplingParams sampling;
  // Stop early when this token is produced (< 0: never).
  int32_t stop_token = -1;
};

struct Generation {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

struct OfflineGenerateOptions {
  int batch_size = 1;  // requests per Forward call
  // Prompt tokens per prefill Forward call (chunked prefill); 0 = whole prompt.
  int64_t prefill_chunk = 0;
};

// `kv_pool` provides the kv_cache tag for a SimpleKvCache sized to fit.
absl::StatusOr<std::vector<Generation>> GenerateOffline(
    TransformerModel& model, const std::vector<GenerationRequest>& requests,
    const OfflineGenerateOptions& options, TaggedPool* kv_pool);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_OFFLINE_GENERATOR_H_
