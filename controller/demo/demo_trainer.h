// DemoTrainer: the trainer process of the README's main job. It drives the
// colocated cycle of DESIGN.md against a real controller and real engines:
//
//   Rollout()          Generate (greedy) on every engine of the node;
//   PrepareTraining()  controller: pause, release weights/kv_cache/cuda_graph,
//                      verify (node -> TRAINING);
//   Train()            "trains": loads the previous checkpoint into its own
//                      memory, allocates and touches `train_bytes` more,
//                      perturbs every tensor deterministically (seeded by the
//                      step and the tensor name) and writes checkpoint
//                      <checkpoint_dir>/step_<N> (config.json +
//                      model.safetensors); maps it as the trainer's copy;
//   BeginWeightSync()  controller: resume weights only (node -> WEIGHT_SYNC);
//                      returns the group parameters and engine endpoints;
//   Broadcast()        hosts the rendezvous as rank 0 and calls
//                      InitWeightsUpdateGroup + UpdateWeightsFromDistributed
//                      on every engine (weight_sync::WeightSender) with
//                      weight_version "<N>", then destroys the group and
//                      frees the trainer's copy;
//   FinishWeightSync() controller: resume kv_cache/cuda_graph, continue
//                      (node -> ROLLOUT), trainer_weights_freed = true.
//
// Who forms the group: the trainer. The controller only returns its
// parameters (master_port 0 = pick a free port here).
//
// Errors are the controller's or engines' statuses with the call named.
// Not thread-safe.
#ifndef COLO_CONTROLLER_DEMO_DEMO_TRAINER_H_
#define COLO_CONTROLLER_DEMO_DEMO_TRAINER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colo/v1/controller.grpc.pb.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/model/safetensors.h"
#include "weight_sync/broadcast_sender.h"
#include "weight_sync/sender.h"

namespace colo {
namespace controller {
namespace demo {

struct DemoTrainerOptions {
  // host:port of the controller.
  std::string controller;
  // Bearer token for the controller's mutating RPCs (empty: none).
  std::string auth_token;
  // HF-layout model directory holding the step-0 weights the engines loaded.
  std::string base_model;
  // Checkpoints go to <checkpoint_dir>/step_<N>.
  std::string checkpoint_dir;
  // Rollout: prompts per engine, their length, tokens generated per prompt.
  int num_prompts = 4;
  int prompt_len = 8;
  int max_new_tokens = 8;
  std::string pause_mode = "retract";
  // Memory the "training" allocates and touches on top of the weights.
  int64_t train_bytes = 32 << 20;
  // Each step multiplies every weight by (1 + perturb * u), u in [-1, 1).
  double perturb = 0.05;
  // Deadline of each controller call and of each Generate.
  absl::Duration rpc_timeout = absl::Seconds(120);
  // Overrides the group's master address from BeginWeightSync (empty: use it).
  std::string master_address;
  // Deadlines of the weight-sync group.
  absl::Duration init_timeout = absl::Seconds(60);
  absl::Duration transfer_timeout = absl::Seconds(60);
};

// One engine's rollout.
struct EngineRollout {
  std::string engine;
  // weight_version of the last response of each prompt (all equal unless an
  // update raced the rollout).
  std::vector<std::string> weight_versions;
  std::vector<std::vector<int32_t>> tokens;
};

struct RolloutReport {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<EngineRollout> engines;
  int64_t duration_us = 0;
};

// One phase of a cycle as the trainer saw it.
struct PhaseRecord {
  std::string name;  // rollout, prepare_training, train, begin_weight_sync, ...
  int64_t duration_us = 0;
  // The node after the phase (with per-engine memory), fetched outside the
  // timed window.
  ::colo::v1::NodeState state;
  // The trainer's resident bytes at the end of the phase (peak for train).
  int64_t trainer_rss_bytes = 0;
};

struct CycleReport {
  int64_t step = 0;
  RolloutReport rollout;  // before PrepareTraining (weights of step - 1)
  std::vector<PhaseRecord> phases;
  std::string checkpoint;
  weight_sync::SendReport send;
  std::vector<weight_sync::EngineUpdateResult> updates;
  int64_t total_us = 0;
};

class DemoTrainer {
 public:
  static absl::StatusOr<std::unique_ptr<DemoTrainer>> Create(const DemoTrainerOptions& options);
  ~DemoTrainer();

  // The cycle's steps, in order; RunCycle calls them and records a timeline.
  absl::StatusOr<RolloutReport> Rollout();
  absl::StatusOr<::colo::v1::TransitionResponse> PrepareTraining(int64_t step);
  // Returns the checkpoint directory written for `step`.
  absl::StatusOr<std::string> Train(int64_t step);
  absl::StatusOr<::colo::v1::BeginWeightSyncResponse> BeginWeightSync(int64_t step);
  // Broadcasts the trained weights of `step` (Train must have run) to the
  // engines of `group`, then frees the trainer's copy.
  absl::StatusOr<weight_sync::SendReport> Broadcast(
      int64_t step, const ::colo::v1::BeginWeightSyncResponse& group,
      std::vector<weight_sync::EngineUpdateResult>* results);
  absl::StatusOr<::colo::v1::TransitionResponse> FinishWeightSync(int64_t step);

  absl::StatusOr<::colo::v1::NodeState> GetState(bool include_memory);
  // The whole cycle for `step`.
  absl::StatusOr<CycleReport> RunCycle(int64_t step);

  std::string CheckpointDir(int64_t step) const;
  // The prompts every rollout sends.
  const std::vector<std::vector<int32_t>>& prompts() const { return prompts_; }
  ::colo::v1::MemoryController::Stub& controller() { return *controller_; }
  // Whether the trainer still holds a copy of the weights.
  bool holds_weights() const { return trained_ != nullptr; }

 private:
  DemoTrainer(const DemoTrainerOptions& options, int vocab);

  const DemoTrainerOptions options_;
  std::vector<std::vector<int32_t>> prompts_;
  std::unique_ptr<::colo::v1::MemoryController::Stub> controller_;
  // Weights of the last trained step (the previous checkpoint's directory).
  std::string last_checkpoint_;
  // The trainer's copy of the weights between Train and Broadcast.
  std::unique_ptr<engine::SafetensorsCheckpoint> trained_;
  int64_t trained_step_ = -1;
  int64_t train_peak_rss_ = 0;
};

// Resident bytes of this process (/proc/self/statm); 0 if unreadable.
int64_t SelfRssBytes();

// Deterministic prompt `index` of `len` tokens in [0, vocab).
std::vector<int32_t> DemoPrompt(int index, int len, int vocab);

// Human-readable timeline of one cycle: a row per phase with its duration,
// the node's phase and each engine's memory, the controller's own phase
// durations, the broadcast figures and the rollout's weight_version.
std::string FormatCycle(const CycleReport& report);
// One line per engine: weight_version and the first prompt's tokens.
std::string FormatRollout(const RolloutReport& rollout);

}  // namespace demo
}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_DEMO_DEMO_TRAINER_H_
