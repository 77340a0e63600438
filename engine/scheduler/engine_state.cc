#include "engine/scheduler/engine_state.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colo::engine {

const char* EngineState::Name() const {
  if (needs_weights) return "needs_weights";
  return run == RunState::kPaused ? "paused" : "serving";
}

absl::Status EngineState::Pause(PauseMode mode) {
  run = RunState::kPaused;
  paused_mode = mode;
  return absl::OkStatus();
}

absl::Status EngineState::Continue() {
  if (needs_weights) {
    return absl::FailedPreconditionError(
        "the engine needs weights: they were released without a host backup and no update "
        "has been committed since; send weights (UpdateWeightsFromDistributed / FromTensor / "
        "FromDisk) before ContinueGeneration");
  }
  run = RunState::kServing;
  paused_mode.reset();
  return absl::OkStatus();
}

ServingStatus DescribeServing(const EngineState& state,
                              const std::vector<std::string>& released_tags) {
  ServingStatus status;
  const std::string released =
      released_tags.empty() ? "" : absl::StrCat("memory released: ", absl::StrJoin(released_tags, ","));
  if (state.needs_weights) {
    status.state = "needs_weights";
    status.reason =
        "weights were released without a host backup; send a weight update before continuing";
    if (!released.empty()) absl::StrAppend(&status.reason, " (", released, ")");
  } else if (state.run == RunState::kPaused) {
    status.state = "paused";
    status.reason = absl::StrCat(
        "generation paused (", state.paused_mode.has_value() ? PauseModeName(*state.paused_mode) : "",
        ")", released.empty() ? "; ContinueGeneration resumes it"
                              : absl::StrCat("; ", released, ": ResumeTags, then ContinueGeneration"));
  } else if (!released_tags.empty()) {
    status.state = "released";
    status.reason = absl::StrCat(released, "; generation waits for ResumeTags");
  } else {
    status.state = "serving";
    status.can_generate = true;
  }
  return status;
}

}  // namespace colo::engine
