#include "tests/e2e/e2e_fixture.h"

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/tiny_model.h"
#include "grpcpp/grpcpp.h"
#include "tests/engine/engine_fixture.h"

namespace colo::test_util {
namespace {

template <typename Resp, typename Fn>
absl::StatusOr<Resp> Call(Fn fn) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  Resp response;
  grpc::Status s = fn(&context, &response);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return response;
}

}  // namespace

absl::StatusOr<std::string> E2EModel() {
  engine::TinyModelOptions o;
  o.layers = 4;
  o.hidden = 256;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = 4096;
  o.seed = 11;
  return MakeTinyModel("e2e", o);
}

absl::StatusOr<colo::v1::NodeState> GetNodeState(colo::v1::MemoryController::Stub& stub,
                                                 bool include_memory) {
  colo::v1::GetStateRequest request;
  request.set_include_memory(include_memory);
  return Call<colo::v1::NodeState>(
      [&](grpc::ClientContext* c, colo::v1::NodeState* o) { return stub.GetState(c, request, o); });
}

absl::StatusOr<colo::v1::GetServerInfoResponse> EngineInfo(colo::v1::RolloutEngine::Stub& stub) {
  return Call<colo::v1::GetServerInfoResponse>([&](grpc::ClientContext* c, auto* o) {
    return stub.GetServerInfo(c, colo::v1::GetServerInfoRequest(), o);
  });
}

absl::StatusOr<colo::v1::GetMemoryInfoResponse> EngineMemory(colo::v1::RolloutEngine::Stub& stub) {
  return Call<colo::v1::GetMemoryInfoResponse>([&](grpc::ClientContext* c, auto* o) {
    return stub.GetMemoryInfo(c, colo::v1::GetMemoryInfoRequest(), o);
  });
}

int64_t TagResidentBytes(const colo::v1::MemoryInfo& memory, const std::string& tag) {
  for (const auto& t : memory.tags()) {
    if (t.tag() == tag) return t.resident_bytes();
  }
  return 0;
}

CommandResult RunCommand(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) r.output += buf;
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

CommandResult Coloctl(const E2ENode& node, const std::string& args) {
  return RunCommand(absl::StrCat(RunfilePath("controller/coloctl"),
                                 " --controller=", node.controller_address(), " ", args));
}

absl::Status UpdateEnginesFromDisk(E2ENode& node, const std::string& dir,
                                   const std::string& version) {
  for (int i = 0; i < node.num_engines(); ++i) {
    colo::v1::UpdateWeightsFromDiskRequest request;
    request.set_model_path(dir);
    request.set_weight_version(version);
    absl::StatusOr<colo::v1::UpdateWeightsResponse> r =
        Call<colo::v1::UpdateWeightsResponse>([&](grpc::ClientContext* c, auto* o) {
          return node.engine_stub(i).UpdateWeightsFromDisk(c, request, o);
        });
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

absl::Status RecoverNode(E2ENode& node, const std::string& dir, const std::string& version) {
  CommandResult first = Coloctl(node, "recover");
  if (first.exit_code == 0) return absl::OkStatus();
  if (first.output.find("needs weights") == std::string::npos) {
    return absl::InternalError(absl::StrCat("coloctl recover: ", first.output));
  }
  absl::Status sent = UpdateEnginesFromDisk(node, dir, version);
  if (!sent.ok()) return sent;
  CommandResult second = Coloctl(node, "recover");
  if (second.exit_code != 0) {
    return absl::InternalError(absl::StrCat("coloctl recover after sending weights: ",
                                            second.output));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<E2ENode>> E2ENode::Start(const std::string& model_dir,
                                                        const NodeOptions& options) {
  std::unique_ptr<E2ENode> node(new E2ENode());
  node->model_dir_ = model_dir;
  node->options_ = options;
  node->dir_ = MakeTempDir("node_");
  node->journal_ = node->dir_ + "/journal";
  node->engines_.resize(options.num_engines);
  node->engine_addresses_.resize(options.num_engines);
  node->engine_stubs_.resize(options.num_engines);
  for (int i = 0; i < options.num_engines; ++i) {
    absl::Status s = node->StartEngine(i, 0);
    if (!s.ok()) return s;
  }
  absl::Status s = node->StartController(0);
  if (!s.ok()) return s;
  return node;
}

E2ENode::~E2ENode() {
  // Controller first: it must not see its engines vanish.
  if (controller_ != nullptr) controller_->Kill();
  for (auto& e : engines_) {
    if (e != nullptr) e->Kill();
  }
}

absl::Status E2ENode::StartEngine(int i, int port) {
  ServerProcessOptions o;
  o.binary = RunfilePath("engine/server/colo-engine");
  o.name = absl::StrCat("engine", i);
  o.work_dir = dir_;
  o.port = port;
  o.args = {absl::StrCat("--model=", model_dir_), "--device=cpu", "--kv_cache_bytes=16777216",
            "--cpu_threads=1"};
  o.args.insert(o.args.end(), options_.engine_flags.begin(), options_.engine_flags.end());
  if (i < static_cast<int>(options_.per_engine_flags.size())) {
    o.args.insert(o.args.end(), options_.per_engine_flags[i].begin(),
                  options_.per_engine_flags[i].end());
  }
  absl::StatusOr<std::unique_ptr<ServerProcess>> p = ServerProcess::Start(o);
  if (!p.ok()) return p.status();
  engines_[i] = *std::move(p);
  engine_addresses_[i] = engines_[i]->address();
  engine_stubs_[i] = colo::v1::RolloutEngine::NewStub(
      grpc::CreateChannel(engine_addresses_[i], grpc::InsecureChannelCredentials()));
  return absl::OkStatus();
}

absl::Status E2ENode::StartController(int port) {
  ServerProcessOptions o;
  o.binary = RunfilePath("controller/colo-controller");
  o.name = "controller";
  o.work_dir = dir_;
  o.port = port;
  o.args = {absl::StrCat("--engines=", absl::StrJoin(engine_addresses_, ",")),
            absl::StrCat("--journal=", journal_),
            "--weight_sync_master_port=0",
            absl::StrCat("--health_interval=", absl::FormatDuration(options_.health_interval)),
            "--health_timeout=1s",
            absl::StrCat("--health_failures=", options_.health_failures),
            "--engine_timeout=30s"};
  o.args.insert(o.args.end(), options_.controller_flags.begin(), options_.controller_flags.end());
  absl::StatusOr<std::unique_ptr<ServerProcess>> p = ServerProcess::Start(o);
  if (!p.ok()) return p.status();
  controller_ = *std::move(p);
  controller_address_ = controller_->address();
  if (controller_stub_ == nullptr) {
    controller_stub_ = colo::v1::MemoryController::NewStub(
        grpc::CreateChannel(controller_address_, grpc::InsecureChannelCredentials()));
  }
  return absl::OkStatus();
}

void E2ENode::KillEngine(int i) { engines_[i]->Kill(); }

void E2ENode::StopEngine(int i) { ::kill(engines_[i]->pid(), SIGSTOP); }
void E2ENode::ContinueEngine(int i) { ::kill(engines_[i]->pid(), SIGCONT); }
void E2ENode::StopController() { ::kill(controller_->pid(), SIGSTOP); }
void E2ENode::ContinueController() { ::kill(controller_->pid(), SIGCONT); }

absl::Status E2ENode::RestartEngine(int i) {
  const int port = engines_[i]->port();
  engines_[i]->Kill();
  return StartEngine(i, port);
}

void E2ENode::KillController() { controller_->Kill(); }

absl::Status E2ENode::RestartController() {
  const int port = controller_->port();
  controller_->Kill();
  return StartController(port);
}

controller::demo::DemoTrainerOptions E2ENode::TrainerOptions() const {
  controller::demo::DemoTrainerOptions o;
  o.controller = controller_address_;
  o.base_model = model_dir_;
  o.checkpoint_dir = dir_ + "/checkpoints";
  o.num_prompts = 3;
  o.prompt_len = 6;
  o.max_new_tokens = 6;
  o.train_bytes = 8 << 20;
  o.perturb = 0.1;
  o.rpc_timeout = absl::Seconds(60);
  o.init_timeout = absl::Seconds(30);
  o.transfer_timeout = absl::Seconds(30);
  return o;
}

absl::StatusOr<colo::v1::NodeState> E2ENode::WaitForPhase(colo::v1::Phase phase,
                                                           absl::Duration timeout) {
  return WaitFor([phase](const colo::v1::NodeState& s) { return s.phase() == phase; },
                 colo::v1::Phase_Name(phase), timeout);
}

absl::StatusOr<colo::v1::NodeState> E2ENode::WaitFor(
    const std::function<bool(const colo::v1::NodeState&)>& done, const std::string& what,
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<colo::v1::NodeState> state;
  // Watch streams every change; the first message is the current state.
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(deadline));
  auto reader = controller_stub_->Watch(&context, colo::v1::WatchRequest());
  colo::v1::NodeState message;
  while (reader->Read(&message)) {
    state = message;
    if (done(message)) {
      context.TryCancel();
      (void)reader->Finish();
      return state;
    }
  }
  grpc::Status s = reader->Finish();
  if (state.ok()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "node did not reach ", what, " within ", absl::FormatDuration(timeout), "; last phase ",
        colo::v1::Phase_Name(state->phase()), " (", state->reason(), "); engines: ",
        [&] {
          std::string out;
          for (const auto& e : state->engines()) absl::StrAppend(&out, e.ShortDebugString(), "; ");
          return out;
        }(),
        "watch ended: ", s.error_message()));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("watch ended before any state: ", s.error_message()));
}

}  // namespace colo::test_util
