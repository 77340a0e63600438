#include "controller/coloctl_lib.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "colo/v1/controller.grpc.pb.h"
#include "colo/v1/engine.grpc.pb.h"
#include "controller/phase.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/server/auth.h"

namespace colo {
namespace controller {
namespace {

using ::colo::v1::MemoryController;
using ::colo::v1::RolloutEngine;

std::string Json(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) {
    return "{}";
  }
  return json;
}

std::string Bytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (int64_t{1} << 30) || bytes <= -(int64_t{1} << 30)) {
    return absl::StrFormat("%.2f GiB", b / (1 << 30));
  }
  if (bytes >= (1 << 20) || bytes <= -(1 << 20)) return absl::StrFormat("%.2f MiB", b / (1 << 20));
  if (bytes >= (1 << 10) || bytes <= -(1 << 10)) return absl::StrFormat("%.2f KiB", b / (1 << 10));
  return absl::StrCat(bytes, " B");
}

std::string Millis(int64_t micros) { return absl::StrFormat("%.1f ms", micros / 1000.0); }

// Connection state shared by the commands.
class Ctl {
 public:
  Ctl(const ColoctlArgs& args, std::ostream& out, std::ostream& err)
      : args_(args), out_(out), err_(err) {}

  int Run();

 private:
  bool Init();
  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout) const;
  std::unique_ptr<grpc::ClientContext> Context() const { return Context(args_.timeout); }
  int RpcError(const grpc::Status& status) const;
  bool json() const { return args_.output == "json"; }

  int Status();
  int Watch();
  int Engines();
  int Memory();
  int FanOut();
  int EngineCommand();
  int Generate();
  int Cycle();
  int Recover();
  int WeightGroups();

  void PrintNodeState(const ::colo::v1::NodeState& state) const;
  void PrintEngines(
      const google::protobuf::RepeatedPtrField<::colo::v1::EngineState>& engines) const;
  void PrintMemory(const std::string& address, const ::colo::v1::MemoryInfo& memory) const;
  int PrintFanOut(const ::colo::v1::FanOutResponse& response) const;

  const ColoctlArgs& args_;
  std::ostream& out_;
  std::ostream& err_;
  std::string token_;
  std::unique_ptr<MemoryController::Stub> controller_;
  std::unique_ptr<RolloutEngine::Stub> engine_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
};

bool Ctl::Init() {
  if (!args_.auth_token_file.empty()) {
    auto token = ReadTokenFile(args_.auth_token_file);
    if (!token.ok()) {
      err_ << "coloctl: --auth_token_file: " << token.status().message() << "\n";
      return false;
    }
    token_ = *token;
  }
  credentials_ = grpc::InsecureChannelCredentials();
  if (!args_.tls_ca.empty()) {
    std::ifstream in(args_.tls_ca);
    if (!in) {
      err_ << "coloctl: --tls_ca: cannot read '" << args_.tls_ca << "'\n";
      return false;
    }
    std::stringstream pem;
    pem << in.rdbuf();
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = pem.str();
    credentials_ = grpc::SslCredentials(ssl);
  }
  if (!args_.controller.empty()) {
    controller_ = MemoryController::NewStub(grpc::CreateChannel(args_.controller, credentials_));
  } else {
    engine_ = RolloutEngine::NewStub(grpc::CreateChannel(args_.engine, credentials_));
  }
  return true;
}

std::unique_ptr<grpc::ClientContext> Ctl::Context(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  AddBearerToken(context.get(), token_);
  return context;
}

int Ctl::RpcError(const grpc::Status& status) const {
  err_ << "error: " << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))
       << ": " << status.error_message() << "\n";
  return 1;
}

// The HEALTHY column: "yes", "STALE" (no answer within the controller's
// bound, or the last probe failed: e.g. a stopped engine), "NO" (lost),
// "unwatched" (--health_interval=0).
std::string HealthColumn(const ::colo::v1::EngineState& e) {
  if (!e.healthy() || e.health() == "lost") return "NO";
  if (e.health() == "stale") return "STALE";
  if (e.health() == "unwatched") return "unwatched";
  return "yes";
}

// Age of the engine's last answer, e.g. "0.4s ago", "never".
std::string LastAnswer(const ::colo::v1::EngineState& e, absl::Time now) {
  if (e.last_ok_us() <= 0) return "never";
  const absl::Duration age = std::max(absl::ZeroDuration(), now - absl::FromUnixMicros(e.last_ok_us()));
  std::string text = absl::StrFormat("%.1fs ago", absl::ToDoubleSeconds(age));
  if (e.failed_probes() > 0) absl::StrAppend(&text, ", ", e.failed_probes(), " probes failed");
  return text;
}

void Ctl::PrintEngines(
    const google::protobuf::RepeatedPtrField<::colo::v1::EngineState>& engines) const {
  const absl::Time now = absl::Now();
  out_ << absl::StrFormat("%-22s %-9s %-26s %-14s %-10s %-28s %s\n", "ENGINE", "HEALTHY",
                          "LAST ANSWER", "STATE", "WEIGHTS", "RELEASED", "LAST ERROR");
  for (const auto& e : engines) {
    out_ << absl::StrFormat(
        "%-22s %-9s %-26s %-14s %-10s %-28s %s\n", e.address(), HealthColumn(e),
        LastAnswer(e, now), e.engine_state().empty() ? "?" : e.engine_state(),
        e.weight_version().empty() ? "-" : e.weight_version(),
        e.released_tags().empty() ? "-" : absl::StrJoin(e.released_tags(), ","), e.last_error());
  }
}

void Ctl::PrintNodeState(const ::colo::v1::NodeState& state) const {
  const absl::Duration since = absl::Now() - absl::FromUnixMicros(state.phase_since_us());
  out_ << "phase   " << PhaseName(state.phase()) << " (for "
       << absl::FormatDuration(absl::Trunc(since, absl::Milliseconds(1))) << ")\n";
  out_ << "step    " << state.step() << "\n";
  if (!state.reason().empty()) out_ << "reason  " << state.reason() << "\n";
  PrintEngines(state.engines());
  if (!state.recent_phases().empty()) {
    out_ << "recent phases:\n";
    for (const auto& d : state.recent_phases()) {
      out_ << absl::StrFormat("  step %-6d %-18s %s\n", d.step(), PhaseName(d.phase()),
                              Millis(d.duration_us()));
    }
  }
}

void Ctl::PrintMemory(const std::string& address, const ::colo::v1::MemoryInfo& m) const {
  out_ << "engine " << address << ": " << (m.device().kind().empty() ? "?" : m.device().kind())
       << " device free " << Bytes(m.device().free_bytes()) << " of "
       << Bytes(m.device().total_bytes());
  if (m.device().kind() == "cpu")
    out_ << ", process RSS " << Bytes(m.device().process_resident_bytes());
  out_ << "\n";
  out_ << absl::StrFormat("  %-12s %-10s %14s %14s %14s\n", "TAG", "STATE", "RESERVED", "RESIDENT",
                          "HOST BACKUP");
  for (const auto& t : m.tags()) {
    std::string state = t.state() == ::colo::v1::TAG_STATE_RESIDENT   ? "resident"
                        : t.state() == ::colo::v1::TAG_STATE_RELEASED ? "released"
                                                                      : "?";
    out_ << absl::StrFormat("  %-12s %-10s %14s %14s %14s\n", t.tag(), state,
                            Bytes(t.reserved_bytes()), Bytes(t.resident_bytes()),
                            Bytes(t.host_backup_bytes()));
  }
  const auto& c = m.caching_allocator();
  out_ << "  caching allocator: allocated " << Bytes(c.allocated_bytes()) << ", reserved "
       << Bytes(c.reserved_bytes()) << ", peak " << Bytes(c.peak_reserved_bytes()) << ", "
       << c.num_segments() << " segments, fragmentation "
       << absl::StrFormat("%.3f", c.fragmentation()) << "\n";
  for (const auto& p : m.kv_pools()) {
    out_ << absl::StrFormat("  kv pool %-12s %d/%d pages free (page size %d), %s\n", p.pool(),
                            p.free_pages(), p.capacity_pages(), p.page_size(), Bytes(p.bytes()));
  }
}

int Ctl::PrintFanOut(const ::colo::v1::FanOutResponse& response) const {
  int rc = 0;
  for (const auto& r : response.results()) {
    if (r.code() != 0) rc = 1;
  }
  if (json()) {
    out_ << Json(response) << "\n";
    return rc;
  }
  for (const auto& r : response.results()) {
    if (r.code() != 0) {
      out_ << r.address()
           << ": error: " << absl::StatusCodeToString(static_cast<absl::StatusCode>(r.code()))
           << ": " << r.message() << "\n";
      continue;
    }
    out_ << r.address() << ": ok";
    if (r.has_release()) {
      for (const auto& t : r.release().tags()) {
        out_ << " " << t.tag() << "=" << (t.no_op() ? "no-op" : Bytes(t.bytes()));
      }
      out_ << " (device free " << Bytes(r.release().device_free_bytes_before()) << " -> "
           << Bytes(r.release().device_free_bytes_after()) << ")";
      if (r.release().caching_allocator_reserved_bytes_before() > 0) {
        out_ << " caching allocator reserved "
             << Bytes(r.release().caching_allocator_reserved_bytes_before()) << " -> "
             << Bytes(r.release().caching_allocator_reserved_bytes_after());
      }
    }
    if (r.has_resume()) {
      for (const auto& t : r.resume().tags()) {
        out_ << " " << t.tag() << "=" << (t.no_op() ? "no-op" : Bytes(t.bytes()));
      }
      out_ << " (device free " << Bytes(r.resume().device_free_bytes_before()) << " -> "
           << Bytes(r.resume().device_free_bytes_after()) << ")";
    }
    if (r.has_pause()) {
      out_ << " mode=" << r.pause().mode() << " aborted=" << r.pause().num_aborted()
           << " retracted=" << r.pause().num_retracted() << " kept=" << r.pause().num_kept();
    }
    if (r.has_continue_generation()) {
      out_ << " caching allocator reserved "
           << Bytes(r.continue_generation().reserved_bytes_before()) << " -> "
           << Bytes(r.continue_generation().reserved_bytes_after());
    }
    out_ << "\n";
  }
  return rc;
}

int Ctl::Status() {
  if (controller_) {
    ::colo::v1::NodeState state;
    grpc::Status s = controller_->GetState(Context().get(), {}, &state);
    if (!s.ok()) return RpcError(s);
    if (json()) {
      out_ << Json(state) << "\n";
    } else {
      PrintNodeState(state);
    }
    return 0;
  }
  ::colo::v1::GetServerInfoResponse info;
  grpc::Status s = engine_->GetServerInfo(Context().get(), {}, &info);
  if (!s.ok()) return RpcError(s);
  if (json()) {
    out_ << Json(info) << "\n";
    return 0;
  }
  out_ << "engine   " << args_.engine << " (" << info.device() << ", version " << info.version()
       << ")\n";
  out_ << "state    " << info.state()
       << (info.paused_mode().empty() ? "" : absl::StrCat(" (", info.paused_mode(), ")"))
       << (info.reason().empty() ? "" : absl::StrCat(": ", info.reason())) << "\n";
  out_ << "weights  " << (info.weight_version().empty() ? "-" : info.weight_version()) << "\n";
  out_ << "released "
       << (info.released_tags().empty() ? "-" : absl::StrJoin(info.released_tags(), ",")) << "\n";
  out_ << "model    " << info.model().architecture() << " " << info.model().num_layers()
       << " layers, hidden " << info.model().hidden_size() << ", vocab "
       << info.model().vocab_size() << "\n";
  out_ << "requests " << info.num_running() << " running, " << info.num_waiting()
       << " waiting; KV capacity " << info.kv_capacity_tokens() << " tokens, page size "
       << info.page_size() << "\n";
  return 0;
}

int Ctl::Watch() {
  auto context = Context();
  auto reader = controller_->Watch(context.get(), {});
  ::colo::v1::NodeState state;
  while (reader->Read(&state)) {
    if (json()) {
      out_ << Json(state) << "\n";
    } else {
      out_ << absl::FormatTime("%H:%M:%E3S", absl::FromUnixMicros(state.phase_since_us()),
                               absl::LocalTimeZone())
           << "  " << absl::StrFormat("%-18s", PhaseName(state.phase())) << " step " << state.step()
           << (state.reason().empty() ? "" : absl::StrCat("  ", state.reason())) << "\n";
    }
    out_.flush();
  }
  grpc::Status s = reader->Finish();
  // Watching until --timeout is the normal end.
  if (s.ok() || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) return 0;
  return RpcError(s);
}

int Ctl::Engines() {
  ::colo::v1::ListEnginesResponse response;
  grpc::Status s = controller_->ListEngines(Context().get(), {}, &response);
  if (!s.ok()) return RpcError(s);
  if (json()) {
    out_ << Json(response) << "\n";
  } else {
    PrintEngines(response.engines());
  }
  return 0;
}

int Ctl::Memory() {
  if (controller_) {
    ::colo::v1::GetStateRequest request;
    request.set_include_memory(true);
    ::colo::v1::NodeState state;
    grpc::Status s = controller_->GetState(Context().get(), request, &state);
    if (!s.ok()) return RpcError(s);
    if (json()) {
      out_ << Json(state) << "\n";
      return 0;
    }
    for (const auto& e : state.engines()) {
      PrintMemory(e.address(), e.memory());
      if (!e.last_error().empty()) out_ << "  last error: " << e.last_error() << "\n";
    }
    return 0;
  }
  ::colo::v1::GetMemoryInfoResponse response;
  grpc::Status s = engine_->GetMemoryInfo(Context().get(), {}, &response);
  if (!s.ok()) return RpcError(s);
  if (json()) {
    out_ << Json(response) << "\n";
  } else {
    PrintMemory(args_.engine, response.memory());
  }
  return 0;
}

int Ctl::FanOut() {
  ::colo::v1::FanOutResponse response;
  grpc::Status s;
  const std::string& c = args_.command;
  if (c == "release") {
    ::colo::v1::ReleaseTagsRequest request;
    for (const auto& t : args_.tags) request.add_tags(t);
    s = controller_->ReleaseTags(Context().get(), request, &response);
  } else if (c == "resume") {
    ::colo::v1::ResumeTagsRequest request;
    for (const auto& t : args_.tags) request.add_tags(t);
    s = controller_->ResumeTags(Context().get(), request, &response);
  } else if (c == "pause") {
    ::colo::v1::PauseGenerationRequest request;
    request.set_mode(args_.mode);
    s = controller_->PauseGeneration(Context().get(), request, &response);
  } else {
    ::colo::v1::ContinueGenerationRequest request;
    request.set_torch_empty_cache(args_.empty_cache);
    s = controller_->ContinueGeneration(Context().get(), request, &response);
  }
  if (!s.ok()) return RpcError(s);
  return PrintFanOut(response);
}

int Ctl::EngineCommand() {
  // The same rendering as a one-engine fan-out.
  ::colo::v1::FanOutResponse response;
  ::colo::v1::EngineResult* result = response.add_results();
  result->set_address(args_.engine);
  grpc::Status s;
  const std::string& c = args_.command;
  if (c == "release") {
    ::colo::v1::ReleaseTagsRequest request;
    for (const auto& t : args_.tags) request.add_tags(t);
    s = engine_->ReleaseTags(Context().get(), request, result->mutable_release());
  } else if (c == "resume") {
    ::colo::v1::ResumeTagsRequest request;
    for (const auto& t : args_.tags) request.add_tags(t);
    s = engine_->ResumeTags(Context().get(), request, result->mutable_resume());
  } else if (c == "pause") {
    ::colo::v1::PauseGenerationRequest request;
    request.set_mode(args_.mode);
    s = engine_->PauseGeneration(Context().get(), request, result->mutable_pause());
  } else {
    ::colo::v1::ContinueGenerationRequest request;
    request.set_torch_empty_cache(args_.empty_cache);
    s = engine_->ContinueGeneration(Context().get(), request,
                                    result->mutable_continue_generation());
  }
  if (!s.ok()) return RpcError(s);
  if (json()) {
    if (result->has_release()) out_ << Json(result->release()) << "\n";
    if (result->has_resume()) out_ << Json(result->resume()) << "\n";
    if (result->has_pause()) out_ << Json(result->pause()) << "\n";
    if (result->has_continue_generation()) out_ << Json(result->continue_generation()) << "\n";
    return 0;
  }
  return PrintFanOut(response);
}

int Ctl::Generate() {
  std::string target = args_.engine;
  if (!engine_) {
    // Through a controller: generate on its first healthy engine.
    ::colo::v1::ListEnginesResponse engines;
    grpc::Status s = controller_->ListEngines(Context().get(), {}, &engines);
    if (!s.ok()) return RpcError(s);
    for (const auto& e : engines.engines()) {
      if (e.healthy()) {
        target = e.address();
        break;
      }
    }
    if (target.empty()) {
      err_ << "error: UNAVAILABLE: the controller has no healthy engine\n";
      return 1;
    }
    engine_ = RolloutEngine::NewStub(grpc::CreateChannel(target, credentials_));
  }
  ::colo::v1::GenerateRequest request;
  for (int32_t id : args_.input_ids) request.add_input_ids(id);
  request.mutable_sampling_params()->set_max_new_tokens(args_.max_new_tokens);
  request.mutable_sampling_params()->set_temperature(args_.temperature);
  auto context = Context();
  auto reader = engine_->Generate(context.get(), request);
  ::colo::v1::GenerateResponse response;
  ::colo::v1::GenerateResponse last;
  int tokens = 0;
  while (reader->Read(&response)) {
    if (json()) {
      out_ << Json(response) << "\n";
    } else {
      for (int32_t id : response.output_ids()) out_ << (tokens++ == 0 ? "" : " ") << id;
    }
    out_.flush();
    if (!response.finish_reason().empty()) last = response;
  }
  grpc::Status s = reader->Finish();
  if (!json() && tokens > 0) out_ << "\n";
  if (!s.ok()) return RpcError(s);
  if (!json()) {
    out_ << "finish_reason=" << last.finish_reason() << " prompt_tokens=" << last.prompt_tokens()
         << " cached_tokens=" << last.cached_tokens() << " completion_tokens=" << tokens
         << " weight_version=" << last.weight_version() << " engine=" << target << "\n";
  }
  return 0;
}

int Ctl::Cycle() {
  int64_t step = args_.step;
  if (step < 0) {
    ::colo::v1::NodeState state;
    grpc::Status s = controller_->GetState(Context().get(), {}, &state);
    if (!s.ok()) return RpcError(s);
    step = state.step() + 1;
  }
  struct Mark {
    std::string name;
    absl::Duration took;
    ::colo::v1::NodeState state;
  };
  std::vector<Mark> marks;

  ::colo::v1::PrepareTrainingRequest prepare;
  prepare.set_step(step);
  prepare.set_pause_mode(args_.pause_mode);
  ::colo::v1::TransitionResponse prepared;
  absl::Time start = absl::Now();
  grpc::Status s = controller_->PrepareTraining(Context().get(), prepare, &prepared);
  if (!s.ok()) return RpcError(s);
  marks.push_back({"PrepareTraining", absl::Now() - start, prepared.state()});
  if (json()) out_ << Json(prepared) << "\n";

  ::colo::v1::BeginWeightSyncRequest begin;
  begin.set_step(step);
  ::colo::v1::BeginWeightSyncResponse begun;
  start = absl::Now();
  s = controller_->BeginWeightSync(Context().get(), begin, &begun);
  if (!s.ok()) return RpcError(s);
  marks.push_back({"BeginWeightSync", absl::Now() - start, begun.state()});
  if (json()) out_ << Json(begun) << "\n";

  ::colo::v1::FinishWeightSyncRequest finish;
  finish.set_step(step);
  finish.set_trainer_weights_freed(true);
  ::colo::v1::TransitionResponse finished;
  start = absl::Now();
  s = controller_->FinishWeightSync(Context().get(), finish, &finished);
  if (!s.ok()) return RpcError(s);
  marks.push_back({"FinishWeightSync", absl::Now() - start, finished.state()});
  if (json()) {
    out_ << Json(finished) << "\n";
    return 0;
  }
  out_ << "cycle step " << step << " (pause mode " << args_.pause_mode << ")\n";
  for (const Mark& m : marks) {
    out_ << absl::StrFormat("  %-18s %10s  -> %s\n", m.name,
                            Millis(absl::ToInt64Microseconds(m.took)), PhaseName(m.state.phase()));
  }
  out_ << "controller phase timeline:\n";
  int64_t total = 0;
  for (const auto& d : finished.state().recent_phases()) {
    if (d.step() != step) continue;
    total += d.duration_us();
    out_ << absl::StrFormat("  %-18s %10s\n", PhaseName(d.phase()), Millis(d.duration_us()));
  }
  out_ << absl::StrFormat("  %-18s %10s\n", "total", Millis(total));
  for (const auto& e : finished.state().engines()) {
    for (const auto& t : e.memory().tags()) {
      out_ << "  " << e.address() << " " << t.tag() << " resident " << Bytes(t.resident_bytes())
           << "\n";
    }
  }
  return 0;
}

int Ctl::Recover() {
  ::colo::v1::TransitionResponse response;
  grpc::Status s = controller_->Recover(Context().get(), {}, &response);
  if (!s.ok()) return RpcError(s);
  if (json()) {
    out_ << Json(response) << "\n";
  } else {
    out_ << (response.replayed() ? "node was already in " : "recovered: node is in ")
         << PhaseName(response.state().phase()) << "\n";
  }
  return 0;
}

// With --controller the node's engines are asked directly (same token and
// TLS settings): the groups live in the engines.
int Ctl::WeightGroups() {
  std::vector<std::string> addresses;
  if (controller_) {
    ::colo::v1::ListEnginesResponse engines;
    grpc::Status s = controller_->ListEngines(Context().get(), {}, &engines);
    if (!s.ok()) return RpcError(s);
    for (const auto& e : engines.engines()) addresses.push_back(e.address());
  } else {
    addresses.push_back(args_.engine);
  }
  int rc = 0;
  if (!json()) {
    out_ << absl::StrFormat("%-22s %-20s %-6s %-11s %-9s %-8s %-7s %s\n", "ENGINE", "GROUP",
                            "RDZV", "RANK/WORLD", "BACKEND", "STATE", "UPDATES", "LAST ERROR");
  }
  for (const std::string& address : addresses) {
    std::unique_ptr<RolloutEngine::Stub> stub =
        engine_ && address == args_.engine
            ? nullptr
            : RolloutEngine::NewStub(grpc::CreateChannel(address, credentials_));
    RolloutEngine::Stub* engine = stub ? stub.get() : engine_.get();
    if (!args_.destroy_group.empty()) {
      ::colo::v1::DestroyWeightsUpdateGroupRequest request;
      request.set_group_name(args_.destroy_group);
      ::colo::v1::DestroyWeightsUpdateGroupResponse response;
      grpc::Status s = engine->DestroyWeightsUpdateGroup(Context().get(), request, &response);
      if (s.ok()) {
        if (!json()) err_ << address << ": destroyed group " << args_.destroy_group << "\n";
      } else if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        if (!json()) err_ << address << ": no group " << args_.destroy_group << "\n";
      } else {
        err_ << address << ": ";
        rc = RpcError(s);
      }
    }
    ::colo::v1::ListWeightsUpdateGroupsResponse groups;
    grpc::Status s = engine->ListWeightsUpdateGroups(Context().get(), {}, &groups);
    if (!s.ok()) {
      err_ << address << ": ";
      rc = RpcError(s);
      continue;
    }
    if (json()) {
      for (const auto& g : groups.groups()) {
        ::colo::v1::WeightsUpdateGroupInfo copy = g;
        // The engine's address is not part of the message: print it first.
        out_ << "{\"engine\":\"" << address << "\",\"group\":" << Json(copy) << "}\n";
      }
      continue;
    }
    for (const auto& g : groups.groups()) {
      out_ << absl::StrFormat("%-22s %-20s %-6s %-11s %-9s %-8s %-7d %s\n", address,
                              g.group_name(), g.rendezvous(),
                              absl::StrCat(g.rank(), "/", g.world_size()), g.backend(), g.state(),
                              g.updates(), g.last_error().empty() ? "-" : g.last_error());
    }
  }
  return rc;
}

int Ctl::Run() {
  if (!Init()) return 2;
  const std::string& c = args_.command;
  if (c == "status") return Status();
  if (c == "watch") return Watch();
  if (c == "engines") return Engines();
  if (c == "memory") return Memory();
  if (c == "generate") return Generate();
  if (c == "cycle") return Cycle();
  if (c == "recover") return Recover();
  if (c == "weight-groups") return WeightGroups();
  return controller_ ? FanOut() : EngineCommand();
}

}  // namespace

int RunColoctl(const ColoctlArgs& args, std::ostream& out, std::ostream& err) {
  Ctl ctl(args, out, err);
  return ctl.Run();
}

int ColoctlMain(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  absl::StatusOr<ColoctlArgs> args = ParseColoctlArgs(argv);
  if (!args.ok()) {
    err << "coloctl: " << args.status().message() << " (see coloctl --help)\n";
    return 2;
  }
  if (args->help) {
    out << ColoctlUsage();
    return 0;
  }
  return RunColoctl(*args, out, err);
}

}  // namespace controller
}  // namespace colo
