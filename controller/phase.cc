#include "controller/phase.h"

#include "absl/strings/str_cat.h"

namespace colo {
namespace controller {

std::string PhaseName(Phase phase) {
  if (::colo::v1::Phase_IsValid(phase)) return ::colo::v1::Phase_Name(phase);
  return absl::StrCat("PHASE_", static_cast<int>(phase));
}

bool IsLegalTransition(Phase from, Phase to) {
  using ::colo::v1::FAILED;
  switch (from) {
    case ::colo::v1::ROLLOUT:
      return to == ::colo::v1::RELEASING || to == ::colo::v1::PAUSED_FOR_UPDATE || to == FAILED;
    case ::colo::v1::RELEASING:
      return to == ::colo::v1::TRAINING || to == FAILED;
    case ::colo::v1::TRAINING:
      return to == ::colo::v1::WEIGHTS_RESUMING || to == FAILED;
    case ::colo::v1::WEIGHTS_RESUMING:
      return to == ::colo::v1::WEIGHT_SYNC || to == FAILED;
    case ::colo::v1::WEIGHT_SYNC:
      return to == ::colo::v1::KV_RESUMING || to == FAILED;
    case ::colo::v1::KV_RESUMING:
      return to == ::colo::v1::ROLLOUT || to == FAILED;
    case ::colo::v1::PAUSED_FOR_UPDATE:
      return to == ::colo::v1::ROLLOUT || to == FAILED;
    case ::colo::v1::FAILED:
      return to == ::colo::v1::ROLLOUT;
    default:
      return false;
  }
}

absl::Status CheckTransition(Phase from, Phase to) {
  if (IsLegalTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("illegal phase transition ", PhaseName(from), " -> ", PhaseName(to)));
}

absl::Status RequirePhase(absl::string_view op, Phase required, Phase current,
                          absl::string_view reason) {
  if (current == required) return absl::OkStatus();
  std::string message =
      absl::StrCat(op, " needs phase ", PhaseName(required), ", node is in ", PhaseName(current));
  if (current == ::colo::v1::FAILED && !reason.empty()) {
    absl::StrAppend(&message, " (", reason, "); call Recover first");
  }
  return absl::FailedPreconditionError(message);
}

bool IsStablePhase(Phase phase) {
  switch (phase) {
    case ::colo::v1::ROLLOUT:
    case ::colo::v1::TRAINING:
    case ::colo::v1::WEIGHT_SYNC:
    case ::colo::v1::PAUSED_FOR_UPDATE:
    case ::colo::v1::FAILED:
      return true;
    default:
      return false;
  }
}

}  // namespace controller
}  // namespace colo
