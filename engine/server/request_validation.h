// Validation of RolloutEngine requests, shared by the gRPC edge and tests.
// Every function returns INVALID_ARGUMENT with a message naming the field
// and the offending value.
#ifndef COLO_ENGINE_SERVER_REQUEST_VALIDATION_H_
#define COLO_ENGINE_SERVER_REQUEST_VALIDATION_H_

#include "absl/status/status.h"
#include "colo/v1/engine.pb.h"

namespace colo::engine {

struct ModelLimits {
  int vocab_size = 0;
  // Longest sequence (prompt + new tokens) the model accepts.
  int max_context_tokens = 0;
};

absl::Status ValidateSamplingParams(const colo::v1::SamplingParams& params,
                                    const ModelLimits& limits);

// Checks input_ids (non-empty, each in [0, vocab)), the sampling parameters,
// and prompt + max_new_tokens against the context length.
absl::Status ValidateGenerateRequest(const colo::v1::GenerateRequest& request,
                                     const ModelLimits& limits);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_REQUEST_VALIDATION_H_
