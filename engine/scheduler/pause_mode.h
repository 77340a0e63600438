// How PauseGeneration treats in-flight requests.
#ifndef COLO_ENGINE_SCHEDULER_PAUSE_MODE_H_
#define COLO_ENGINE_SCHEDULER_PAUSE_MODE_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace colo::engine {

enum class PauseMode {
  // Every in-flight request finishes with finish_reason "abort" and the
  // tokens it had; the prefix cache is flushed.
  kAbort,
  // Running requests go back to the waiting queue with their tokens so far;
  // their KV is freed and the cache flushed; they recompute after Continue.
  kRetract,
  // Scheduling stops; requests and KV stay as they are.
  kInPlace,
};

// "abort", "retract", "in_place".
absl::string_view PauseModeName(PauseMode mode);

// INVALID_ARGUMENT naming the valid modes for anything else.
absl::StatusOr<PauseMode> ParsePauseMode(absl::string_view name);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SCHEDULER_PAUSE_MODE_H_
