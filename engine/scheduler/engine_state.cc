#include "engine/scheduler/engine_state.h"

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

}  // namespace colo::engine
