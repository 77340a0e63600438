#include "engine/server/request_validation.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace colo::engine {

absl::Status ValidateSamplingParams(const colo::v1::SamplingParams& params,
                                    const ModelLimits& limits) {
  if (params.max_new_tokens() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling_params.max_new_tokens must be > 0, got ", params.max_new_tokens()));
  }
  if (!std::isfinite(params.temperature()) || params.temperature() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling_params.temperature must be >= 0 (0 = greedy), got ", params.temperature()));
  }
  if (!std::isfinite(params.top_p()) || params.top_p() < 0 || params.top_p() > 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling_params.top_p must be in (0, 1] (0 = disabled), got ", params.top_p()));
  }
  if (params.top_k() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling_params.top_k must be >= 0 (0 = disabled), got ", params.top_k()));
  }
  for (int id : params.stop_token_ids()) {
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sampling_params.stop_token_ids has ", id, ", outside the vocabulary [0, ",
          limits.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateGenerateRequest(const colo::v1::GenerateRequest& request,
                                     const ModelLimits& limits) {
  if (request.input_ids().empty()) {
    return absl::InvalidArgumentError("input_ids is empty: send at least one token id");
  }
  for (int i = 0; i < request.input_ids_size(); ++i) {
    const int id = request.input_ids(i);
    if (id < 0 || id >= limits.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input_ids[", i, "] = ", id, " is outside the vocabulary [0, ",
          limits.vocab_size, ")"));
    }
  }
  if (!request.has_sampling_params()) {
    return absl::InvalidArgumentError(
        "sampling_params is required (at least max_new_tokens > 0)");
  }
  if (absl::Status s = ValidateSamplingParams(request.sampling_params(), limits); !s.ok()) {
    return s;
  }
  const int64_t total = static_cast<int64_t>(request.input_ids_size()) +
                        request.sampling_params().max_new_tokens();
  if (request.session_id().empty() && total > limits.max_context_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", request.input_ids_size(), " tokens) + max_new_tokens (",
        request.sampling_params().max_new_tokens(), ") = ", total,
        " exceeds the model's context of ", limits.max_context_tokens, " tokens"));
  }
  return absl::OkStatus();
}

}  // namespace colo::engine
