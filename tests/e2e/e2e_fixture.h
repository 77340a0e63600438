// End-to-end fixture: a node of real processes on 127.0.0.1 — N colo-engine
// (CPU) and one colo-controller with a journal — plus the demo trainer
// (//controller/demo) as the trainer. Engines and the controller can be
// killed and restarted on the same port (clients keep their address).
#ifndef COLO_TESTS_E2E_E2E_FIXTURE_H_
#define COLO_TESTS_E2E_E2E_FIXTURE_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colo/v1/controller.grpc.pb.h"
#include "colo/v1/engine.grpc.pb.h"
#include "controller/demo/demo_trainer.h"
#include "tests/util/server_process.h"

namespace colo::test_util {

// The model every e2e test uses (written once per test process): 4 layers,
// hidden 256, vocab 4096 — ~17 MiB of f32 weights, so that releasing weights
// and a 16 MiB KV cache moves RSS far beyond measurement noise.
absl::StatusOr<std::string> E2EModel();

struct NodeOptions {
  int num_engines = 2;
  // Flags for every engine / for engine i (appended after the common ones).
  std::vector<std::string> engine_flags;
  std::vector<std::vector<std::string>> per_engine_flags;
  std::vector<std::string> controller_flags;
  // Health watch of the controller.
  absl::Duration health_interval = absl::Milliseconds(200);
  int health_failures = 2;
};

class E2ENode {
 public:
  static absl::StatusOr<std::unique_ptr<E2ENode>> Start(const std::string& model_dir,
                                                        const NodeOptions& options);
  ~E2ENode();

  int num_engines() const { return static_cast<int>(engines_.size()); }
  ServerProcess& engine(int i) { return *engines_[i]; }
  colo::v1::RolloutEngine::Stub& engine_stub(int i) { return *engine_stubs_[i]; }
  std::string engine_address(int i) const { return engine_addresses_[i]; }
  ServerProcess& controller() { return *controller_; }
  std::string controller_address() const { return controller_address_; }
  colo::v1::MemoryController::Stub& stub() { return *controller_stub_; }
  const std::string& journal() const { return journal_; }
  const std::string& dir() const { return dir_; }

  // SIGKILL engine i / start it again on the same port with the same flags.
  void KillEngine(int i);
  absl::Status RestartEngine(int i);
  // SIGKILL the controller / start it again on the same port and journal.
  void KillController();
  absl::Status RestartController();
  // Flags appended to the controller's on its next (re)start.
  void set_controller_flags(std::vector<std::string> flags) {
    options_.controller_flags = std::move(flags);
  }

  // SIGSTOP / SIGCONT engine i or the controller (a hung process). The
  // destructor's SIGKILL also ends stopped processes.
  void StopEngine(int i);
  void ContinueEngine(int i);
  void StopController();
  void ContinueController();

  // Options for a demo trainer of this node (checkpoints under dir()).
  controller::demo::DemoTrainerOptions TrainerOptions() const;

  // Watches the node until `phase` or the deadline; returns the last state.
  absl::StatusOr<colo::v1::NodeState> WaitForPhase(colo::v1::Phase phase, absl::Duration timeout);
  // Watches the node (Watch streams every state change) until `done` holds
  // or the deadline; DEADLINE_EXCEEDED naming `what` and the last state.
  absl::StatusOr<colo::v1::NodeState> WaitFor(
      const std::function<bool(const colo::v1::NodeState&)>& done, const std::string& what,
      absl::Duration timeout);

 private:
  E2ENode() = default;
  absl::Status StartEngine(int i, int port);
  absl::Status StartController(int port);

  std::string model_dir_;
  NodeOptions options_;
  std::string dir_;
  std::string journal_;
  std::vector<std::unique_ptr<ServerProcess>> engines_;
  std::vector<std::string> engine_addresses_;
  std::vector<std::unique_ptr<colo::v1::RolloutEngine::Stub>> engine_stubs_;
  std::unique_ptr<ServerProcess> controller_;
  std::string controller_address_;
  std::unique_ptr<colo::v1::MemoryController::Stub> controller_stub_;
};

// Unary call helpers with a deadline; the gRPC status as absl::Status.
absl::StatusOr<colo::v1::NodeState> GetNodeState(colo::v1::MemoryController::Stub& stub,
                                                 bool include_memory);
absl::StatusOr<colo::v1::GetServerInfoResponse> EngineInfo(colo::v1::RolloutEngine::Stub& stub);
absl::StatusOr<colo::v1::GetMemoryInfoResponse> EngineMemory(colo::v1::RolloutEngine::Stub& stub);

// Resident bytes of `tag` in `memory` (0 when absent).
int64_t TagResidentBytes(const colo::v1::MemoryInfo& memory, const std::string& tag);

struct CommandResult {
  // The exit code, or -1 when the command did not exit normally.
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

// Runs a shell command to its end, collecting stdout and stderr.
CommandResult RunCommand(const std::string& command);

// Runs `coloctl --controller=<node's controller> <args>`.
CommandResult Coloctl(const E2ENode& node, const std::string& args);

// UpdateWeightsFromDisk(dir, version) on every engine of the node.
absl::Status UpdateEnginesFromDisk(E2ENode& node, const std::string& dir,
                                   const std::string& version);

// What an operator does for a FAILED node: `coloctl recover`; when an engine
// needs weights (its weights were released without a host backup), send
// every engine the last committed checkpoint `dir` (weight_version
// `version`) from disk and recover again. OK once the node is in ROLLOUT.
absl::Status RecoverNode(E2ENode& node, const std::string& dir, const std::string& version);

}  // namespace colo::test_util

#endif  // COLO_TESTS_E2E_E2E_FIXTURE_H_
