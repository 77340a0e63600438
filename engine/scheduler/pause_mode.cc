#include "engine/scheduler/pause_mode.h"

#include "absl/strings/str_cat.h"

namespace colo::engine {

absl::string_view PauseModeName(PauseMode mode) {
  switch (mode) {
    case PauseMode::kAbort:
      return "abort";
    case PauseMode::kRetract:
      return "retract";
    case PauseMode::kInPlace:
      return "in_place";
  }
  return "unknown";
}

absl::StatusOr<PauseMode> ParsePauseMode(absl::string_view name) {
  for (PauseMode mode : {PauseMode::kAbort, PauseMode::kRetract, PauseMode::kInPlace}) {
    if (name == PauseModeName(mode)) return mode;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown pause mode '", name, "': expected one of abort, retract, in_place"));
}

}  // namespace colo::engine
