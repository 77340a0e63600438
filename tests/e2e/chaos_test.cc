// Chaos test: repeated colocated cycles on a node of real processes (two CPU
// engines, a controller with a journal, the weight sender as its own
// process) while a seeded "monkey" injects faults at random moments, so
// they land in random phases: kill -9 of an engine (a supervisor restarts it
// on the same port), SIGSTOP of an engine for 0.2-3 s (short stops are
// absorbed, long ones make it "lost"), kill -9 of the controller (restarted
// on the same port and journal), SIGSTOP of the controller, kill -9 and
// SIGSTOP of colo-weight-sender mid-broadcast.
//
// The trainer retries as the README's failure paragraph documents:
// UNAVAILABLE / DEADLINE_EXCEEDED -> retry the call; ABORTED or a FAILED node
// -> `coloctl recover` (sending the last committed weights from disk to
// engines that need weights), then redo the step; FAILED_PRECONDITION ->
// read the node's state and continue from there. A failed broadcast is
// resent under a new group name (the dead one is destroyed best-effort).
//
// When the chaos period ends the trainer runs one more step without faults;
// then: the node is in ROLLOUT, every engine serves the last committed
// weight_version with weights equal to that checkpoint (greedy tokens equal
// the offline oracle, checksums equal across engines), the KV audit found no
// violation, every process exits 0 on SIGTERM and none is left behind. The
// counts (cycles, faults by kind, recoveries, retries) are printed.
//
// Environment (bazel test --test_env=...):
//   COLO_CHAOS_SEED     fault schedule seed (default 18; "random" = from the
//                       clock). Printed; thread timing is not seeded, so a
//                       seed reproduces the schedule, not every interleaving.
//   COLO_CHAOS_SECONDS  length of the chaos period (default 35; the CI form).
//   COLO_CHAOS_LONG=1   the long form: 600 s unless COLO_CHAOS_SECONDS is set
//                       (run with --test_timeout=1800).
#include <dirent.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/child_process.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;

struct ChaosConfig {
  uint64_t seed = 18;
  absl::Duration duration = absl::Seconds(35);
};

ChaosConfig ConfigFromEnv() {
  ChaosConfig c;
  const char* seed = std::getenv("COLO_CHAOS_SEED");
  if (seed != nullptr && std::string(seed) == "random") {
    c.seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  } else if (seed != nullptr) {
    uint64_t v = 0;
    if (absl::SimpleAtoi(seed, &v)) c.seed = v;
  }
  const char* long_form = std::getenv("COLO_CHAOS_LONG");
  if (long_form != nullptr && std::string(long_form) == "1") c.duration = absl::Seconds(600);
  const char* seconds = std::getenv("COLO_CHAOS_SECONDS");
  int64_t s = 0;
  if (seconds != nullptr && absl::SimpleAtoi(seconds, &s) && s > 0) c.duration = absl::Seconds(s);
  return c;
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Counters shared by the monkey and the trainer. Thread-safe.
class Counters {
 public:
  void Add(const std::string& name, int n = 1) {
    absl::MutexLock lock(&mu_);
    counts_[name] += n;
  }
  int Get(const std::string& name) const {
    absl::MutexLock lock(&mu_);
    auto it = counts_.find(name);
    return it == counts_.end() ? 0 : it->second;
  }
  std::string Format(const std::string& prefix) const {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> parts;
    for (const auto& [name, n] : counts_) {
      if (name.rfind(prefix, 0) == 0) parts.push_back(absl::StrCat(name.substr(prefix.size()), "=", n));
    }
    return absl::StrJoin(parts, " ");
  }

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, int> counts_ ABSL_GUARDED_BY(mu_);
};

// The pid of the running colo-weight-sender (0: none), for the monkey.
class SenderSlot {
 public:
  void Set(pid_t pid) {
    absl::MutexLock lock(&mu_);
    pid_ = pid;
  }
  // Sends `sig` to the sender if one runs; false when none.
  bool Signal(int sig) {
    absl::MutexLock lock(&mu_);
    if (pid_ <= 0) return false;
    return ::kill(pid_, sig) == 0;
  }

 private:
  absl::Mutex mu_;
  pid_t pid_ ABSL_GUARDED_BY(mu_) = 0;
};

// Injects one fault at a time, at seeded random moments, until Stop().
// Owns every change to the node's processes while it runs.
class Monkey {
 public:
  Monkey(E2ENode* node, uint64_t seed, SenderSlot* sender, Counters* counters)
      : node_(node), rng_(seed), sender_(sender), counters_(counters) {}

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }
  void Stop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }
  // The first error from restarting a process (the test fails on it).
  absl::Status error() const { return error_; }

 private:
  absl::Duration Uniform(double lo_s, double hi_s) {
    return absl::Seconds(std::uniform_real_distribution<double>(lo_s, hi_s)(rng_));
  }
  // Waits `d` or until Stop(); false when stopped.
  bool Wait(absl::Duration d) { return !stop_.WaitForNotificationWithTimeout(d); }

  void Run() {
    while (Wait(Uniform(0.3, 2.0))) {
      const int kind = std::uniform_int_distribution<int>(0, 5)(rng_);
      const int engine = std::uniform_int_distribution<int>(0, node_->num_engines() - 1)(rng_);
      const absl::Duration pause = Uniform(0.2, 3.0);
      absl::Status s;
      switch (kind) {
        case 0:
          counters_->Add("fault.engine_kill9");
          std::printf("chaos: kill -9 engine %d\n", engine);
          s = node_->RestartEngine(engine);
          break;
        case 1:
          counters_->Add("fault.engine_sigstop");
          std::printf("chaos: SIGSTOP engine %d for %s\n", engine,
                      absl::FormatDuration(pause).c_str());
          node_->StopEngine(engine);
          stop_.WaitForNotificationWithTimeout(pause);
          node_->ContinueEngine(engine);
          break;
        case 2:
          counters_->Add("fault.controller_kill9");
          std::printf("chaos: kill -9 controller\n");
          s = node_->RestartController();
          break;
        case 3:
          counters_->Add("fault.controller_sigstop");
          std::printf("chaos: SIGSTOP controller for %s\n", absl::FormatDuration(pause).c_str());
          node_->StopController();
          stop_.WaitForNotificationWithTimeout(pause);
          node_->ContinueController();
          break;
        case 4:
          if (sender_->Signal(SIGKILL)) {
            counters_->Add("fault.sender_kill9");
            std::printf("chaos: kill -9 colo-weight-sender\n");
          }
          break;
        case 5:
          if (sender_->Signal(SIGSTOP)) {
            counters_->Add("fault.sender_sigstop");
            std::printf("chaos: SIGSTOP colo-weight-sender for %s\n",
                        absl::FormatDuration(pause).c_str());
            stop_.WaitForNotificationWithTimeout(pause);
            sender_->Signal(SIGCONT);
          }
          break;
      }
      std::fflush(stdout);
      if (!s.ok() && error_.ok()) error_ = s;
    }
  }

  E2ENode* const node_;
  std::mt19937_64 rng_;
  SenderSlot* const sender_;
  Counters* const counters_;
  absl::Notification stop_;
  std::thread thread_;
  absl::Status error_;
};

// A trainer that drives one step to its FinishWeightSync through faults.
// Uses only the node's (stable) addresses, never the E2ENode object.
class ChaosTrainer {
 public:
  ChaosTrainer(const std::string& controller, const std::vector<std::string>& engines,
               DemoTrainer* trainer, SenderSlot* sender, Counters* counters,
               std::string base_model)
      : controller_address_(controller),
        engine_addresses_(engines),
        trainer_(trainer),
        sender_(sender),
        counters_(counters),
        committed_dir_(std::move(base_model)) {
    channel_ = grpc::CreateChannel(controller, grpc::InsecureChannelCredentials());
    controller_ = colo::v1::MemoryController::NewStub(channel_);
    for (const std::string& e : engines) {
      engines_.push_back(colo::v1::RolloutEngine::NewStub(
          grpc::CreateChannel(e, grpc::InsecureChannelCredentials())));
    }
  }

  const std::string& committed_dir() const { return committed_dir_; }
  const std::string& committed_version() const { return committed_version_; }

  // Drives `step` until FinishWeightSync(step) succeeds (or `deadline`).
  absl::Status RunStep(int64_t step, absl::Time deadline) {
    std::string dir;                // the step's checkpoint (trained once)
    bool finish_tried = false;      // a FinishWeightSync(step) may have committed
    int64_t sent_in_sync = -1;      // phase_since_us of the WEIGHT_SYNC we broadcast in
    bool rolled_out = false;
    std::string last_error;
    while (absl::Now() < deadline) {
      absl::StatusOr<colo::v1::NodeState> state = GetState();
      if (!state.ok()) {
        Retry("get_state", state.status());
        continue;
      }
      const colo::v1::Phase phase = state->phase();
      if (phase == colo::v1::FAILED) {
        if (absl::Status r = Recover(); !r.ok()) {
          last_error = std::string(r.message());
          WaitForChange(*state);
        }
        continue;
      }
      if (phase != colo::v1::ROLLOUT && state->step() != step) {
        // A cycle of another step is in progress (cannot happen unless the
        // node's history is odd): abandon it.
        counters_->Add("trainer.abandoned_cycles");
        if (absl::Status r = Recover(); !r.ok()) WaitForChange(*state);
        continue;
      }
      absl::Status call;
      switch (phase) {
        case colo::v1::ROLLOUT: {
          if (finish_tried && state->step() == step) {
            absl::StatusOr<colo::v1::TransitionResponse> f = Finish(step);
            if (f.ok()) return Committed(step, dir);
            finish_tried = false;  // the node was recovered since: redo the step
            call = f.status();
            if (absl::IsFailedPrecondition(call)) counters_->Add("trainer.redone_steps");
            break;
          }
          if (!rolled_out) {
            // Generation on the current weights (errors are the faults').
            absl::StatusOr<controller::demo::RolloutReport> r = trainer_->Rollout();
            if (r.ok()) {
              counters_->Add("trainer.rollouts");
            } else {
              counters_->Add("trainer.rollout_errors");
            }
            rolled_out = true;
          }
          call = Prepare(step).status();
          break;
        }
        case colo::v1::TRAINING: {
          if (dir.empty()) {
            absl::StatusOr<std::string> trained = trainer_->Train(step);
            if (!trained.ok()) return trained.status();
            dir = *trained;
          }
          call = Begin(step).status();
          break;
        }
        case colo::v1::WEIGHT_SYNC: {
          if (dir.empty()) {
            // The step was begun before a failure of ours; train now.
            absl::StatusOr<std::string> trained = trainer_->Train(step);
            if (!trained.ok()) return trained.status();
            dir = *trained;
          }
          if (sent_in_sync != state->phase_since_us()) {
            absl::StatusOr<colo::v1::BeginWeightSyncResponse> group = Begin(step);
            if (!group.ok()) {
              call = group.status();
              break;
            }
            absl::Status sent = Send(step, dir, *group);
            if (!sent.ok()) {
              counters_->Add("trainer.failed_broadcasts");
              call = sent;
              break;
            }
            sent_in_sync = state->phase_since_us();
          }
          finish_tried = true;
          absl::StatusOr<colo::v1::TransitionResponse> f = Finish(step);
          if (f.ok()) return Committed(step, dir);
          call = f.status();
          break;
        }
        default:
          // A transition in progress (e.g. a call of ours whose deadline
          // passed while the controller was stopped): wait for its end.
          WaitForChange(*state);
          continue;
      }
      if (!call.ok()) {
        last_error = std::string(call.message());
        Retry(absl::StrCat("phase_", colo::v1::Phase_Name(phase)), call);
      }
    }
    return absl::DeadlineExceededError(
        absl::StrCat("step ", step, " did not complete; last error: ", last_error));
  }

 private:
  absl::Status Committed(int64_t step, const std::string& dir) {
    committed_dir_ = dir;
    committed_version_ = absl::StrCat(step);
    return absl::OkStatus();
  }

  template <typename Response, typename Fn>
  absl::StatusOr<Response> Call(Fn fn) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    Response response;
    grpc::Status s = fn(&context, &response);
    if (!s.ok()) return FromGrpc(s);
    return response;
  }

  absl::StatusOr<colo::v1::NodeState> GetState() {
    return Call<colo::v1::NodeState>([&](grpc::ClientContext* c, colo::v1::NodeState* o) {
      return controller_->GetState(c, colo::v1::GetStateRequest(), o);
    });
  }
  absl::StatusOr<colo::v1::TransitionResponse> Prepare(int64_t step) {
    colo::v1::PrepareTrainingRequest r;
    r.set_step(step);
    r.set_pause_mode("retract");
    return Call<colo::v1::TransitionResponse>(
        [&](grpc::ClientContext* c, auto* o) { return controller_->PrepareTraining(c, r, o); });
  }
  absl::StatusOr<colo::v1::BeginWeightSyncResponse> Begin(int64_t step) {
    colo::v1::BeginWeightSyncRequest r;
    r.set_step(step);
    return Call<colo::v1::BeginWeightSyncResponse>(
        [&](grpc::ClientContext* c, auto* o) { return controller_->BeginWeightSync(c, r, o); });
  }
  absl::StatusOr<colo::v1::TransitionResponse> Finish(int64_t step) {
    colo::v1::FinishWeightSyncRequest r;
    r.set_step(step);
    r.set_trainer_weights_freed(true);
    return Call<colo::v1::TransitionResponse>(
        [&](grpc::ClientContext* c, auto* o) { return controller_->FinishWeightSync(c, r, o); });
  }

  // Counts a failed call by code; waits (bounded) for the controller to be
  // reachable again or for the node to change before the next attempt.
  void Retry(const std::string& what, const absl::Status& status) {
    counters_->Add(absl::StrCat("retry.", absl::StatusCodeToString(status.code())));
    (void)what;
    if (absl::IsUnavailable(status) || absl::IsDeadlineExceeded(status) ||
        absl::IsCancelled(status)) {
      channel_->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(2));
      return;
    }
    absl::StatusOr<colo::v1::NodeState> state = GetState();
    if (state.ok()) WaitForChange(*state, absl::Milliseconds(500));
  }

  // Waits (bounded) until the node's state differs from `seen`.
  void WaitForChange(const colo::v1::NodeState& seen, absl::Duration timeout = absl::Seconds(1)) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    auto reader = controller_->Watch(&context, colo::v1::WatchRequest());
    colo::v1::NodeState message;
    while (reader->Read(&message)) {
      if (message.phase() != seen.phase() || message.reason() != seen.reason() ||
          message.phase_since_us() != seen.phase_since_us()) {
        context.TryCancel();
        break;
      }
    }
    (void)reader->Finish();
  }

  // `coloctl recover`; engines that need weights get the last committed
  // checkpoint from disk first.
  absl::Status Recover() {
    const std::string coloctl = absl::StrCat(RunfilePath("controller/coloctl"),
                                             " --controller=", controller_address_,
                                             " --timeout=30s recover");
    CommandResult r = RunCommand(coloctl);
    if (r.exit_code == 0) {
      counters_->Add("trainer.recoveries");
      return absl::OkStatus();
    }
    counters_->Add("trainer.failed_recovers");
    if (r.output.find("needs weights") == std::string::npos) {
      return absl::UnavailableError(absl::StrCat("coloctl recover: ", r.output));
    }
    for (size_t i = 0; i < engines_.size(); ++i) {
      absl::StatusOr<colo::v1::GetServerInfoResponse> info =
          Call<colo::v1::GetServerInfoResponse>([&](grpc::ClientContext* c, auto* o) {
            return engines_[i]->GetServerInfo(c, colo::v1::GetServerInfoRequest(), o);
          });
      if (!info.ok() || info->state() != "needs_weights") continue;
      colo::v1::UpdateWeightsFromDiskRequest request;
      request.set_model_path(committed_dir_);
      request.set_weight_version(committed_version_);
      absl::StatusOr<colo::v1::UpdateWeightsResponse> updated =
          Call<colo::v1::UpdateWeightsResponse>([&](grpc::ClientContext* c, auto* o) {
            return engines_[i]->UpdateWeightsFromDisk(c, request, o);
          });
      if (updated.ok()) counters_->Add("trainer.weights_from_disk");
    }
    CommandResult again = RunCommand(coloctl);
    if (again.exit_code != 0) {
      return absl::UnavailableError(absl::StrCat("coloctl recover: ", again.output));
    }
    counters_->Add("trainer.recoveries");
    return absl::OkStatus();
  }

  // Broadcasts `dir` with colo-weight-sender (its own process, for the
  // monkey) to the engines of `group`, under a group name of its own.
  absl::Status Send(int64_t step, const std::string& dir,
                    const colo::v1::BeginWeightSyncResponse& group) {
    const std::string name = absl::StrCat("chaos-", step, "-", ++send_attempts_);
    std::vector<std::string> engines(group.engines_size());
    for (const auto& e : group.engines()) {
      if (e.rank() < 1 || e.rank() > group.engines_size()) {
        return absl::InternalError("bad rank in BeginWeightSync");
      }
      engines[e.rank() - 1] = e.address();
    }
    const std::vector<std::string> args = {
        absl::StrCat("--engines=", absl::StrJoin(engines, ",")),
        absl::StrCat("--checkpoint=", dir),
        absl::StrCat("--weight_version=", step),
        absl::StrCat("--backend=", group.group().backend()),
        "--master_address=127.0.0.1",
        "--master_port=0",
        absl::StrCat("--group_name=", name),
        "--init_timeout_ms=8000",
        "--transfer_timeout_ms=8000"};
    absl::StatusOr<std::unique_ptr<ChildProcess>> child =
        ChildProcess::Spawn(RunfilePath("weight_sync/colo-weight-sender"), args, name);
    if (!child.ok()) return child.status();
    sender_->Set((*child)->pid());
    absl::StatusOr<int> status = (*child)->Wait(absl::Seconds(90));
    sender_->Set(0);
    if (!status.ok()) return status.status();
    if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) {
      counters_->Add("trainer.broadcasts");
      return absl::OkStatus();
    }
    // A dead sender leaves its group on the engines: destroy it
    // (best-effort; the next attempt uses another name anyway).
    for (auto& engine : engines_) {
      colo::v1::DestroyWeightsUpdateGroupRequest r;
      r.set_group_name(name);
      (void)Call<colo::v1::DestroyWeightsUpdateGroupResponse>(
          [&](grpc::ClientContext* c, auto* o) {
            return engine->DestroyWeightsUpdateGroup(c, r, o);
          });
    }
    return absl::UnavailableError(absl::StrCat("colo-weight-sender exited with wait status ",
                                               *status, ": ", (*child)->LogTail(300)));
  }

  const std::string controller_address_;
  const std::vector<std::string> engine_addresses_;
  DemoTrainer* const trainer_;
  SenderSlot* const sender_;
  Counters* const counters_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<colo::v1::MemoryController::Stub> controller_;
  std::vector<std::unique_ptr<colo::v1::RolloutEngine::Stub>> engines_;
  std::string committed_dir_;
  std::string committed_version_ = "0";
  int send_attempts_ = 0;
};

// Pids of this process's children and of processes whose command line names
// `marker` (the node's directory: its engines, controller, senders).
std::vector<std::string> LeftoverProcesses(const std::string& marker) {
  std::vector<std::string> out;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return out;
  const pid_t self = ::getpid();
  while (dirent* d = ::readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(d->d_name, &pid) || pid == self) continue;
    std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(line.substr(paren + 2));
    char state = '?';
    int ppid = 0;
    rest >> state >> ppid;
    std::ifstream cmd(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
    for (char& c : cmdline) {
      if (c == '\0') c = ' ';
    }
    if (ppid == self || cmdline.find(marker) != std::string::npos) {
      out.push_back(absl::StrCat(pid, " (", std::string(1, state), ") ", cmdline.substr(0, 160)));
    }
  }
  ::closedir(proc);
  return out;
}

TEST(ChaosTest, RandomFaultsDuringRepeatedCycles) {
  const ChaosConfig config = ConfigFromEnv();
  std::printf("chaos: seed %llu (COLO_CHAOS_SEED to override), chaos period %s\n",
              static_cast<unsigned long long>(config.seed),
              absl::FormatDuration(config.duration).c_str());
  std::fflush(stdout);
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.health_interval = absl::Milliseconds(200);
  options.health_failures = 2;
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  std::vector<std::string> engine_addresses;
  for (int i = 0; i < node->num_engines(); ++i) engine_addresses.push_back(node->engine_address(i));

  auto trainer_options = node->TrainerOptions();
  trainer_options.rpc_timeout = absl::Seconds(20);
  ASSERT_OK_AND_ASSIGN(auto demo, DemoTrainer::Create(trainer_options));
  Counters counters;
  SenderSlot sender;
  ChaosTrainer trainer(node->controller_address(), engine_addresses, demo.get(), &sender,
                       &counters, model);
  Monkey monkey(node.get(), config.seed, &sender, &counters);

  const absl::Time start = absl::Now();
  monkey.Start();
  int64_t step = 0;
  absl::Status failed;
  while (absl::Now() - start < config.duration) {
    ++step;
    failed = trainer.RunStep(step, absl::Now() + absl::Seconds(180));
    if (!failed.ok()) break;
    counters.Add("trainer.cycles");
  }
  monkey.Stop();
  ASSERT_OK(monkey.error());
  ASSERT_OK(failed) << "during step " << step;
  // Faults are over: one more step brings the node to a committed version
  // that no fault can have touched.
  ++step;
  ASSERT_OK(trainer.RunStep(step, absl::Now() + absl::Seconds(180)));
  counters.Add("trainer.cycles");
  const absl::Duration took = absl::Now() - start;

  std::printf("chaos: %d cycles in %s (last step %lld); faults: %s; trainer: %s; retries: %s\n",
              counters.Get("trainer.cycles"), absl::FormatDuration(took).c_str(),
              static_cast<long long>(step), counters.Format("fault.").c_str(),
              counters.Format("trainer.").c_str(), counters.Format("retry.").c_str());
  std::fflush(stdout);

  // The node is in ROLLOUT with every engine healthy.
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::ROLLOUT) << state.reason();
  EXPECT_EQ(state.step(), step);
  // Every engine serves the last committed weights.
  const std::string version = absl::StrCat(step);
  EXPECT_EQ(trainer.committed_version(), version);
  std::vector<std::vector<uint32_t>> checksums;
  for (int i = 0; i < node->num_engines(); ++i) {
    SCOPED_TRACE(node->engine_address(i));
    ASSERT_OK_AND_ASSIGN(auto info, EngineInfo(node->engine_stub(i)));
    EXPECT_EQ(info.state(), "serving") << info.reason();
    EXPECT_EQ(info.weight_version(), version);
    EXPECT_TRUE(info.released_tags().empty());
    EXPECT_EQ(info.kv_audit_violations(), 0) << info.last_kv_audit_error();
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    colo::v1::GetWeightChecksumsResponse sums;
    ASSERT_TRUE(node->engine_stub(i)
                    .GetWeightChecksums(&c, colo::v1::GetWeightChecksumsRequest(), &sums)
                    .ok());
    EXPECT_EQ(sums.weight_version(), version);
    std::vector<uint32_t> crcs;
    for (const auto& s : sums.checksums()) crcs.push_back(s.crc32c());
    checksums.push_back(crcs);
  }
  for (size_t i = 1; i < checksums.size(); ++i) EXPECT_EQ(checksums[i], checksums[0]);
  ASSERT_OK_AND_ASSIGN(auto rollout, demo->Rollout());
  ASSERT_OK_AND_ASSIGN(auto oracle, OfflineGreedy(trainer.committed_dir(), rollout.prompts,
                                                  trainer_options.max_new_tokens));
  for (const auto& e : rollout.engines) {
    EXPECT_EQ(e.tokens, oracle) << e.engine << ": weights differ from " << trainer.committed_dir();
    for (const auto& v : e.weight_versions) EXPECT_EQ(v, version) << e.engine;
  }
  for (int i = 0; i < node->num_engines(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto info, EngineInfo(node->engine_stub(i)));
    EXPECT_GT(info.kv_audits(), 0);
    EXPECT_EQ(info.kv_audit_violations(), 0) << info.last_kv_audit_error();
  }

  // Every process drains on SIGTERM and nothing is left behind.
  EXPECT_THAT(node->controller().Terminate(), IsOkAndHolds(0));
  for (int i = 0; i < node->num_engines(); ++i) {
    EXPECT_THAT(node->engine(i).Terminate(), IsOkAndHolds(0)) << node->engine_address(i);
  }
  EXPECT_THAT(LeftoverProcesses(node->dir()), ::testing::IsEmpty());
}

}  // namespace
}  // namespace colo::test_util
