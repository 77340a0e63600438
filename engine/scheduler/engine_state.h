// The engine's externally visible state machine.
//
//   kServing --Pause(mode)--> kPaused(mode) --Continue--> kServing
//   kPaused(m) --Pause(m')--> kPaused(m')      (applies m' to what is left)
//   kServing --Continue--> kServing            (no-op)
//   any --weights resumed without content--> kNeedsWeights
//   kNeedsWeights --weight update committed--> the state it had before
//
// Orthogonal to it, each memory tag is resident or released (TaggedPool).
// The scheduler runs forward steps only in kServing with `weights` and
// `kv_cache` resident and the weights valid; Generate requests arriving at
// other times wait in the queue (or fail UNAVAILABLE when they ask not to
// wait).
#ifndef COLO_ENGINE_SCHEDULER_ENGINE_STATE_H_
#define COLO_ENGINE_SCHEDULER_ENGINE_STATE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/scheduler/pause_mode.h"

namespace colo::engine {

enum class RunState { kServing, kPaused };

struct EngineState {
  RunState run = RunState::kServing;
  std::optional<PauseMode> paused_mode;  // set iff run == kPaused
  // Weights were released without a host backup and have not been replaced
  // by an update since: the engine must not generate ("needs_weights").
  bool needs_weights = false;

  // "serving", "paused" or "needs_weights" (GetServerInfo.state).
  const char* Name() const;
  // Applies a transition; FAILED_PRECONDITION for one the machine forbids.
  absl::Status Pause(PauseMode mode);
  absl::Status Continue();
};

// What GetServerInfo reports, and what the "colo.generate" health service
// follows (both edges use this one rule, so they never disagree).
struct ServingStatus {
  // In order of precedence: "needs_weights", "paused", "released" (not
  // paused, but a memory tag is released: generation waits for ResumeTags),
  // "serving".
  std::string state;
  // Why the engine is not serving (names the released tags); empty when
  // serving.
  std::string reason;
  // True exactly when `state` is "serving".
  bool can_generate = false;
};

// `released_tags`: names of the memory tags currently released.
ServingStatus DescribeServing(const EngineState& state,
                              const std::vector<std::string>& released_tags);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SCHEDULER_ENGINE_STATE_H_
