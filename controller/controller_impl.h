// The per-node memory controller: runs the colocated cycle of DESIGN.md over
// every engine of the node, verifies every release, journals each transition
// before acknowledging it, reconciles a half-done transition after a restart,
// and watches engine health.
//
// Trainer calls carry the RL step and are idempotent: a retry of an operation
// already completed for the node's current step returns the current state
// with replayed = true and touches no engine. Errors:
//   INVALID_ARGUMENT     bad step or pause mode;
//   FAILED_PRECONDITION  wrong phase ("FinishWeightSync needs phase
//                        WEIGHT_SYNC, node is in ROLLOUT"), stale step,
//                        trainer_weights_freed not set;
//   ABORTED              a release/resume did not verify (node -> FAILED);
//   UNAVAILABLE          an engine was lost during the call (node -> FAILED);
//   engine errors        passed through with the engine address and method
//                        (node -> FAILED), e.g. UNIMPLEMENTED;
//   UNAVAILABLE          the controller is shutting down (SIGTERM): the
//                        transition's engine calls were cancelled and the
//                        node's phase is left as journaled, so a restarted
//                        controller finishes it (not FAILED);
//   INTERNAL             the journal could not be written.
//
// Start-up (Create): the journal is replayed and checked against what every
// engine reports (GetServerInfo / GetMemoryInfo: paused? tags released?):
//   - no history (no --journal, a new journal): ROLLOUT at step 0 when every
//     engine that answers is serving with nothing released; otherwise FAILED
//     naming what the engines report (the node's state was lost; `coloctl
//     recover` resumes and continues them).
//   - history lost or in doubt (Journal::Report::lost_history: an empty
//     file, a damaged header, damage in the middle): FAILED at the last valid
//     record's step, the reason naming the journal's report (file, offsets,
//     the copy kept) and what the engines report. No engine is touched
//     before the operator's Recover.
//   - a stable phase that the engines contradict (ROLLOUT with an engine
//     paused or released, PAUSED_FOR_UPDATE with one serving or released,
//     TRAINING with memory resident, WEIGHT_SYNC without weights): FAILED
//     naming the engine and what it reports.
//   - a transient phase (a crash mid-transition): the transition is
//     finished, or FAILED if that fails.
// Unreachable engines are left to the health watch.
//
// Thread-safe. Trainer transitions and operator fan-outs are serialised by
// transition_mu_; state reads (GetState, Watch) never wait for engine calls.
#ifndef COLO_CONTROLLER_CONTROLLER_IMPL_H_
#define COLO_CONTROLLER_CONTROLLER_IMPL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "colo/v1/controller.pb.h"
#include "controller/engine_client.h"
#include "controller/journal.h"
#include "controller/phase.h"

namespace colo {
namespace controller {

// The tags of the colocated cycle.
extern const char* const kAllTags[3];

class ControllerImpl {
 public:
  struct Options {
    // A release must free at least this fraction of the bytes the engine
    // reported for the released tags (--verify_fraction).
    double verify_fraction = 0.95;
    // Returned by BeginWeightSync (world_size is 1 + number of engines; the
    // trainer is rank 0, engine i has rank 1 + i). The controller never
    // forms the group itself: the trainer hosts the rendezvous as rank 0 and
    // calls InitWeightsUpdateGroup{rank_offset = endpoint.rank} and
    // UpdateWeightsFromDistributed on every engine (weight_sync::WeightSender
    // does both). master_port 0 means "the trainer picks a free port".
    std::string weight_sync_backend = "gloo";
    std::string weight_sync_master_address = "127.0.0.1";
    int weight_sync_master_port = 29500;
    std::string weight_sync_group_name = "colo_weight_sync";
    // Period of each engine's health probe; zero disables the watch.
    absl::Duration health_interval = absl::Seconds(1);
    // Consecutive failed probes after which an engine is lost.
    int health_failures_to_lose = 2;
    // An engine whose last answer is older than this (or whose last probe
    // failed) is reported "stale" until it answers or is declared lost.
    // Should exceed health_interval + the probe deadline (colo-controller
    // uses 2 x --health_interval + --health_timeout).
    absl::Duration health_stale_after = absl::Seconds(4);
    // Length of NodeState.recent_phases.
    int max_recent_phases = 32;
  };

  // Takes ownership of the clients (one per engine, in rank order) and of
  // the journal (may be null: nothing is persisted). Replays the journal,
  // queries every engine, finishes a transition a crash interrupted, and
  // starts the health watch. A failed reconciliation leaves the node FAILED
  // (it does not fail Create). INVALID_ARGUMENT for bad options or no engines.
  static absl::StatusOr<std::unique_ptr<ControllerImpl>> Create(
      const Options& options, std::vector<std::unique_ptr<EngineClient>> engines,
      std::unique_ptr<Journal> journal);
  ~ControllerImpl();
  ControllerImpl(const ControllerImpl&) = delete;
  ControllerImpl& operator=(const ControllerImpl&) = delete;

  // --- Trainer-facing transitions --------------------------------------------
  absl::StatusOr<::colo::v1::TransitionResponse> PrepareTraining(
      const ::colo::v1::PrepareTrainingRequest& request) ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  // With request.trainer_ipc_domain, engines in that domain get weight_path
  // "ipc" and the rest form the broadcast group (see controller.proto).
  absl::StatusOr<::colo::v1::BeginWeightSyncResponse> BeginWeightSync(
      const ::colo::v1::BeginWeightSyncRequest& request) ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  absl::StatusOr<::colo::v1::TransitionResponse> FinishWeightSync(
      const ::colo::v1::FinishWeightSyncRequest& request) ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  absl::StatusOr<::colo::v1::TransitionResponse> PauseForUpdate(
      const ::colo::v1::PauseForUpdateRequest& request) ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  absl::StatusOr<::colo::v1::TransitionResponse> ResumeAfterUpdate(
      const ::colo::v1::ResumeAfterUpdateRequest& request) ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  // FAILED -> ROLLOUT: every engine must answer; released tags are resumed
  // (weights first) and paused engines continued. From TRAINING, WEIGHT_SYNC
  // or PAUSED_FOR_UPDATE (a cycle the trainer abandoned) the node first
  // enters FAILED. Replayed in ROLLOUT. FAILED_PRECONDITION when an engine
  // reports "needs_weights" after its tags are back (weights released without
  // host backup): send it weights, then Recover again. On error the node
  // stays FAILED with the new reason. Success forgets the operations
  // completed for the current step, so the trainer can retry that step.
  absl::StatusOr<::colo::v1::TransitionResponse> Recover() ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);

  // --- State ---------------------------------------------------------------------
  // The node state; with include_memory, fetches each engine's memory info
  // first (engines that fail keep their last known memory and get last_error).
  ::colo::v1::NodeState GetState(bool include_memory) ABSL_LOCKS_EXCLUDED(mu_);
  // The node state and its version (bumped on every change).
  ::colo::v1::NodeState Snapshot(uint64_t* version) const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until the version differs from `seen`, `deadline` passes, or
  // Shutdown(). Returns false once shut down.
  bool WaitForChange(uint64_t seen, absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);
  // Queries every engine's server info (live).
  ::colo::v1::ListEnginesResponse ListEngines() ABSL_LOCKS_EXCLUDED(mu_);
  // Releases counted as unverified since start.
  int64_t verification_failures() const ABSL_LOCKS_EXCLUDED(mu_);

  // --- Operator fan-outs (coloctl); they do not change the phase ---------------
  ::colo::v1::FanOutResponse ReleaseTags(const std::vector<std::string>& tags)
      ABSL_LOCKS_EXCLUDED(transition_mu_);
  ::colo::v1::FanOutResponse ResumeTags(const std::vector<std::string>& tags)
      ABSL_LOCKS_EXCLUDED(transition_mu_);
  ::colo::v1::FanOutResponse PauseGeneration(const std::string& mode)
      ABSL_LOCKS_EXCLUDED(transition_mu_);
  ::colo::v1::FanOutResponse ContinueGeneration(bool torch_empty_cache)
      ABSL_LOCKS_EXCLUDED(transition_mu_);

  // Stops the health watch, cancels every engine call in flight (a
  // transition blocked on a hung engine returns UNAVAILABLE at once; later
  // engine calls fail without being sent) and wakes every waiter.
  // Idempotent.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct EngineView {
    bool healthy = true;
    int failed_probes = 0;
    // Time of the engine's last successful answer (probe or call).
    absl::Time last_ok = absl::InfinitePast();
    // GetServerInfo.instance_id last seen; a new one means a restart.
    std::string instance_id;
    std::string last_error;
    ::colo::v1::GetServerInfoResponse info;
    ::colo::v1::MemoryInfo memory;
  };

  ControllerImpl(const Options& options, std::vector<std::unique_ptr<EngineClient>> engines,
                 std::unique_ptr<Journal> journal);

  // Restores the phase from the journal and finishes an interrupted
  // transition.
  void ReplayAndReconcile() ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  // After a restart in a stable phase: FAILED_PRECONDITION naming the engine
  // when what it reports contradicts `phase` (ROLLOUT: paused or tags
  // released; PAUSED_FOR_UPDATE: not paused or tags released; TRAINING:
  // memory resident; WEIGHT_SYNC: weights not resident).
  absl::Status CheckEnginesMatchPhase(Phase phase) ABSL_LOCKS_EXCLUDED(transition_mu_, mu_);
  // One line per engine from the last server info: "<address>: paused
  // (retract), released weights,kv_cache, weight_version 3" or
  // "<address>: no answer (<error>)".
  std::string DescribeEnginesLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records `info`'s instance_id for engine `index`. When it changed, the
  // engine restarted (its memory and weights are back to their start-up
  // state): enters FAILED naming it unless already FAILED. True then.
  bool NoteInstanceLocked(size_t index, const ::colo::v1::GetServerInfoResponse& info)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // "healthy", "stale", "lost" or "unwatched" (EngineState.health).
  std::string HealthLocked(const EngineView& view, absl::Time now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartHealthWatch();
  void HealthLoop(size_t index) ABSL_LOCKS_EXCLUDED(mu_);

  // Idempotency: true when `op` already completed for `step`. A `new_cycle`
  // op may start a later step; others must match the step of the cycle in
  // progress when the node is in their `required` phase.
  absl::StatusOr<bool> CheckStepLocked(const char* op, int64_t step, bool new_cycle,
                                       Phase required) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves to `to` (checked), journals it (fsync), records the duration of
  // the phase left and wakes watchers. INTERNAL if the journal fails (the
  // phase is then unchanged, except that FAILED is always entered).
  absl::Status SetPhaseLocked(Phase to, const std::string& op, bool completed,
                              const std::string& reason) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Enters FAILED with `reason` unless already FAILED.
  void FailLocked(const std::string& op, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends a transition that began at `epoch`: FAILED on error (UNAVAILABLE
  // when the node failed meanwhile because an engine was lost), else `next`.
  absl::StatusOr<::colo::v1::TransitionResponse> CompleteTransition(const char* op,
                                                                    absl::Status result, Phase next,
                                                                    int64_t epoch)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Marks a state change and wakes watchers and health threads.
  void BumpVersionLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ::colo::v1::NodeState StateLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ::colo::v1::TransitionResponse ResponseLocked(bool replayed) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE when the node failed since `epoch` (engine lost).
  absl::Status CheckNotLost(int64_t epoch) const ABSL_LOCKS_EXCLUDED(mu_);

  // Engine work (no lock held; calls run in parallel, one thread per engine).
  absl::Status ForEachEngine(const std::function<absl::Status(size_t)>& fn);
  absl::Status PauseAndRelease(const std::string& mode, int64_t epoch);
  absl::Status ResumeAndVerify(const std::vector<std::string>& tags, int64_t epoch);
  absl::Status ContinueAll(int64_t epoch);
  void RecordMemory(size_t index, const ::colo::v1::MemoryInfo& memory) ABSL_LOCKS_EXCLUDED(mu_);
  void RecordInfo(size_t index, const absl::StatusOr<::colo::v1::GetServerInfoResponse>& info)
      ABSL_LOCKS_EXCLUDED(mu_);
  ::colo::v1::FanOutResponse FanOut(
      const std::function<absl::Status(size_t, ::colo::v1::EngineResult*)>& fn)
      ABSL_LOCKS_EXCLUDED(transition_mu_);
  // Engines whose ipc_domain equals `trainer_ipc_domain` take the IPC path
  // (`domains`: each engine's, from EngineIpcDomains; empty when the
  // trainer gave none).
  ::colo::v1::BeginWeightSyncResponse WeightSyncResponseLocked(
      bool replayed, const std::string& trainer_ipc_domain,
      const std::vector<std::string>& domains) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Each engine's GetServerInfo.ipc_domain ("" for an engine that does not
  // answer: it then takes the broadcast path). Empty without a trainer
  // domain.
  std::vector<std::string> EngineIpcDomains(const std::string& trainer_ipc_domain) const;

  // Constant after construction.
  const Options options_;
  const std::vector<std::unique_ptr<EngineClient>> engines_;

  // Serialises transitions and fan-outs (held across engine calls).
  absl::Mutex transition_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  // Signalled on every version_ change and on shutdown.
  mutable absl::CondVar cv_;
  std::unique_ptr<Journal> journal_ ABSL_GUARDED_BY(mu_);
  Phase phase_ ABSL_GUARDED_BY(mu_) = ::colo::v1::ROLLOUT;
  int64_t step_ ABSL_GUARDED_BY(mu_) = 0;
  std::string reason_ ABSL_GUARDED_BY(mu_);
  std::string pause_mode_ ABSL_GUARDED_BY(mu_);
  absl::Time phase_since_ ABSL_GUARDED_BY(mu_);
  // Operations completed for step_.
  absl::flat_hash_set<std::string> completed_ops_ ABSL_GUARDED_BY(mu_);
  std::deque<::colo::v1::PhaseDuration> recent_ ABSL_GUARDED_BY(mu_);
  std::vector<EngineView> views_ ABSL_GUARDED_BY(mu_);
  // Bumped on every entry into FAILED.
  int64_t fail_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t verification_failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;

  std::vector<std::thread> health_threads_;
};

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_CONTROLLER_IMPL_H_
