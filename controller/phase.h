// The phases of the colocated cycle (colo.v1.Phase) and their legal
// transitions.
//
//   ROLLOUT           -> RELEASING          PrepareTraining: pause + release
//   RELEASING         -> TRAINING           release verified
//   TRAINING          -> WEIGHTS_RESUMING   BeginWeightSync
//   WEIGHTS_RESUMING  -> WEIGHT_SYNC        weights resumed
//   WEIGHT_SYNC       -> KV_RESUMING        FinishWeightSync
//   KV_RESUMING       -> ROLLOUT            kv_cache + cuda_graph resumed, continued
//   ROLLOUT           -> PAUSED_FOR_UPDATE  PauseForUpdate (no release)
//   PAUSED_FOR_UPDATE -> ROLLOUT            ResumeAfterUpdate
//   any but FAILED    -> FAILED             engine lost or restarted / verify failed /
//                                           engine error; at start-up: a damaged journal,
//                                           or engines that contradict the journaled phase
//   FAILED            -> ROLLOUT            Recover (every engine answered)
//
// Anything else is a FAILED_PRECONDITION naming both phases.
#ifndef COLO_CONTROLLER_PHASE_H_
#define COLO_CONTROLLER_PHASE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "colo/v1/controller.pb.h"

namespace colo {
namespace controller {

using Phase = ::colo::v1::Phase;

// "ROLLOUT", "WEIGHT_SYNC", ...; "PHASE_<n>" for values outside the enum.
std::string PhaseName(Phase phase);

// True when `from -> to` is listed above.
bool IsLegalTransition(Phase from, Phase to);

// OK for a legal transition, else FAILED_PRECONDITION
// "illegal phase transition ROLLOUT -> TRAINING".
absl::Status CheckTransition(Phase from, Phase to);

// OK when `current == required`, else FAILED_PRECONDITION
// "<op> needs phase <required>, node is in <current>" (plus the FAILED reason
// when `current` is FAILED and `reason` is not empty).
absl::Status RequirePhase(absl::string_view op, Phase required, Phase current,
                          absl::string_view reason = "");

// True for the phases a trainer call leaves the node in (ROLLOUT, TRAINING,
// WEIGHT_SYNC, PAUSED_FOR_UPDATE, FAILED); false for the transient ones a
// crash can interrupt (RELEASING, WEIGHTS_RESUMING, KV_RESUMING).
bool IsStablePhase(Phase phase);

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_PHASE_H_
