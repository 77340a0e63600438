#include "controller/demo/demo_trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/model/model_config.h"
#include "grpcpp/grpcpp.h"
#include "proto/server/auth.h"
#include "proto/status/status_macros.h"

namespace colo {
namespace controller {
namespace demo {
namespace {

namespace fs = std::filesystem;

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

double Mib(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

int64_t TagResident(const ::colo::v1::MemoryInfo& memory, const std::string& tag) {
  for (const auto& t : memory.tags()) {
    if (t.tag() == tag) return t.resident_bytes();
  }
  return 0;
}

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat("copy ", from, " -> ", to, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

int64_t SelfRssBytes() {
  std::ifstream in("/proc/self/statm");
  int64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<int64_t>(::sysconf(_SC_PAGESIZE));
}

std::vector<int32_t> DemoPrompt(int index, int len, int vocab) {
  std::vector<int32_t> out;
  uint64_t state = 0xC0105EEDull + static_cast<uint64_t>(index) * 7919;
  for (int i = 0; i < len; ++i) {
    out.push_back(static_cast<int32_t>(SplitMix64(&state) % static_cast<uint64_t>(vocab)));
  }
  return out;
}

DemoTrainer::DemoTrainer(const DemoTrainerOptions& options, int vocab)
    : options_(options), last_checkpoint_(options.base_model) {
  for (int i = 0; i < options.num_prompts; ++i) {
    prompts_.push_back(DemoPrompt(i, options.prompt_len, vocab));
  }
  controller_ = ::colo::v1::MemoryController::NewStub(
      grpc::CreateChannel(options.controller, grpc::InsecureChannelCredentials()));
}

DemoTrainer::~DemoTrainer() = default;

absl::StatusOr<std::unique_ptr<DemoTrainer>> DemoTrainer::Create(
    const DemoTrainerOptions& options) {
  if (options.controller.empty()) return absl::InvalidArgumentError("no controller address given");
  if (options.base_model.empty()) return absl::InvalidArgumentError("no base model given");
  if (options.checkpoint_dir.empty()) {
    return absl::InvalidArgumentError("no checkpoint directory given");
  }
  if (options.num_prompts < 1 || options.prompt_len < 1 || options.max_new_tokens < 1) {
    return absl::InvalidArgumentError("prompts, prompt length and max_new_tokens must be >= 1");
  }
  if (options.train_bytes < 0) return absl::InvalidArgumentError("train_bytes must be >= 0");
  ASSIGN_OR_RETURN(engine::ModelConfig config,
                   engine::LoadModelConfig(options.base_model + "/config.json"));
  std::error_code ec;
  fs::create_directories(options.checkpoint_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create checkpoint dir ", options.checkpoint_dir, ": ", ec.message()));
  }
  return std::unique_ptr<DemoTrainer>(
      new DemoTrainer(options, static_cast<int>(config.vocab_size)));
}

std::string DemoTrainer::CheckpointDir(int64_t step) const {
  return absl::StrCat(options_.checkpoint_dir, "/step_", step);
}

// --- Rollout ---------------------------------------------------------------------

absl::StatusOr<RolloutReport> DemoTrainer::Rollout() {
  const absl::Time start = absl::Now();
  ASSIGN_OR_RETURN(::colo::v1::NodeState state, GetState(false));
  RolloutReport report;
  report.prompts = prompts_;
  report.engines.resize(state.engines_size());
  std::vector<absl::Status> results(state.engines_size());
  std::vector<std::thread> threads;
  for (int i = 0; i < state.engines_size(); ++i) {
    threads.emplace_back([&, i] {
      EngineRollout& out = report.engines[i];
      out.engine = state.engines(i).address();
      auto stub = ::colo::v1::RolloutEngine::NewStub(
          grpc::CreateChannel(out.engine, grpc::InsecureChannelCredentials()));
      for (const auto& prompt : prompts_) {
        ::colo::v1::GenerateRequest request;
        request.mutable_input_ids()->Add(prompt.begin(), prompt.end());
        request.mutable_sampling_params()->set_max_new_tokens(options_.max_new_tokens);
        request.mutable_sampling_params()->set_ignore_eos(true);
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             absl::ToChronoNanoseconds(options_.rpc_timeout));
        auto reader = stub->Generate(&context, request);
        ::colo::v1::GenerateResponse response;
        std::vector<int32_t> tokens;
        std::string version, finish;
        while (reader->Read(&response)) {
          tokens.insert(tokens.end(), response.output_ids().begin(), response.output_ids().end());
          if (!response.finish_reason().empty()) {
            version = response.weight_version();
            finish = response.finish_reason();
          }
        }
        absl::Status s = FromGrpc(reader->Finish(), absl::StrCat("Generate on ", out.engine));
        if (s.ok() && finish != "length") {
          s = absl::InternalError(absl::StrCat("Generate on ", out.engine, " finished with '",
                                               finish, "', expected 'length'"));
        }
        if (!s.ok()) {
          results[i] = s;
          return;
        }
        out.tokens.push_back(std::move(tokens));
        out.weight_versions.push_back(version);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) RETURN_IF_ERROR(s);
  report.duration_us = absl::ToInt64Microseconds(absl::Now() - start);
  return report;
}

// --- Controller calls ----------------------------------------------------------------

namespace {

template <typename Request, typename Response, typename Fn>
absl::StatusOr<Response> CallController(const std::string& what, const std::string& token,
                                        absl::Duration timeout, Fn fn, const Request& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
  AddBearerToken(&context, token);
  Response response;
  RETURN_IF_ERROR(FromGrpc(fn(&context, request, &response), what));
  return response;
}

}  // namespace

absl::StatusOr<::colo::v1::TransitionResponse> DemoTrainer::PrepareTraining(int64_t step) {
  ::colo::v1::PrepareTrainingRequest request;
  request.set_step(step);
  request.set_pause_mode(options_.pause_mode);
  return CallController<::colo::v1::PrepareTrainingRequest, ::colo::v1::TransitionResponse>(
      absl::StrCat("PrepareTraining step ", step), options_.auth_token, options_.rpc_timeout,
      [this](auto* c, const auto& r, auto* o) { return controller_->PrepareTraining(c, r, o); },
      request);
}

absl::StatusOr<::colo::v1::BeginWeightSyncResponse> DemoTrainer::BeginWeightSync(int64_t step) {
  ::colo::v1::BeginWeightSyncRequest request;
  request.set_step(step);
  return CallController<::colo::v1::BeginWeightSyncRequest, ::colo::v1::BeginWeightSyncResponse>(
      absl::StrCat("BeginWeightSync step ", step), options_.auth_token, options_.rpc_timeout,
      [this](auto* c, const auto& r, auto* o) { return controller_->BeginWeightSync(c, r, o); },
      request);
}

absl::StatusOr<::colo::v1::TransitionResponse> DemoTrainer::FinishWeightSync(int64_t step) {
  ::colo::v1::FinishWeightSyncRequest request;
  request.set_step(step);
  request.set_trainer_weights_freed(!holds_weights());
  return CallController<::colo::v1::FinishWeightSyncRequest, ::colo::v1::TransitionResponse>(
      absl::StrCat("FinishWeightSync step ", step), options_.auth_token, options_.rpc_timeout,
      [this](auto* c, const auto& r, auto* o) { return controller_->FinishWeightSync(c, r, o); },
      request);
}

absl::StatusOr<::colo::v1::NodeState> DemoTrainer::GetState(bool include_memory) {
  ::colo::v1::GetStateRequest request;
  request.set_include_memory(include_memory);
  return CallController<::colo::v1::GetStateRequest, ::colo::v1::NodeState>(
      "GetState", options_.auth_token, options_.rpc_timeout,
      [this](auto* c, const auto& r, auto* o) { return controller_->GetState(c, r, o); }, request);
}

// --- Training ------------------------------------------------------------------------

absl::StatusOr<std::string> DemoTrainer::Train(int64_t step) {
  trained_.reset();
  ASSIGN_OR_RETURN(std::unique_ptr<engine::SafetensorsCheckpoint> previous,
                   engine::SafetensorsCheckpoint::Open(last_checkpoint_));
  // "Optimizer state and activations": memory the trainer really touches.
  std::vector<char> scratch(static_cast<size_t>(options_.train_bytes));
  const long page = ::sysconf(_SC_PAGESIZE);
  for (size_t i = 0; i < scratch.size(); i += static_cast<size_t>(page)) {
    scratch[i] = static_cast<char>(i / static_cast<size_t>(page) + step);
  }
  engine::SafetensorsWriter writer;
  writer.SetMetadata("colo_step", absl::StrCat(step));
  std::vector<std::vector<float>> weights;  // the trainer's working copy
  for (const auto& [name, view] : previous->tensors()) {
    std::vector<float> w(static_cast<size_t>(view->NumElements()));
    RETURN_IF_ERROR(previous->ReadAsFloat(name, view->shape, w.data()));
    uint64_t state = HashName(name) ^ (static_cast<uint64_t>(step) * 0x2545F4914F6CDD1Dull);
    for (float& x : w) {
      const double u = static_cast<double>(SplitMix64(&state) >> 11) * (1.0 / 9007199254740992.0);
      x = static_cast<float>(x * (1.0 + options_.perturb * (2.0 * u - 1.0)));
    }
    RETURN_IF_ERROR(writer.AddFloat(name, view->dtype, view->shape, w));
    weights.push_back(std::move(w));
  }
  train_peak_rss_ = SelfRssBytes();
  const std::string dir = CheckpointDir(step);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  RETURN_IF_ERROR(CopyFile(last_checkpoint_ + "/config.json", dir + "/config.json"));
  RETURN_IF_ERROR(writer.Write(dir + "/model.safetensors"));
  // Training memory goes; the new weights stay as the trainer's copy.
  ASSIGN_OR_RETURN(trained_, engine::SafetensorsCheckpoint::Open(dir));
  trained_step_ = step;
  last_checkpoint_ = dir;
  return dir;
}

// --- Weight sync ---------------------------------------------------------------------

absl::StatusOr<weight_sync::SendReport> DemoTrainer::Broadcast(
    int64_t step, const ::colo::v1::BeginWeightSyncResponse& group,
    std::vector<weight_sync::EngineUpdateResult>* results) {
  if (trained_ == nullptr || trained_step_ != step) {
    return absl::FailedPreconditionError(
        absl::StrCat("Broadcast step ", step, ": no trained weights for this step (Train first)"));
  }
  std::vector<::colo::v1::EngineEndpoint> endpoints(group.engines().begin(),
                                                    group.engines().end());
  std::sort(endpoints.begin(), endpoints.end(),
            [](const auto& a, const auto& b) { return a.rank() < b.rank(); });
  weight_sync::WeightSenderOptions so;
  // Engine i occupies ranks rank .. rank + num_ranks - 1 (tensor parallelism).
  int next_rank = 1;
  for (int i = 0; i < static_cast<int>(endpoints.size()); ++i) {
    const int ranks = std::max(1, endpoints[i].num_ranks());
    if (endpoints[i].rank() != next_rank) {
      return absl::InvalidArgumentError(absl::StrCat(
          "BeginWeightSync returned engine ", endpoints[i].address(), " with rank ",
          endpoints[i].rank(), "; the sender needs consecutive ranks from 1 (expected ",
          next_rank, ")"));
    }
    so.engines.push_back(endpoints[i].address());
    so.engine_ranks.push_back(ranks);
    next_rank += ranks;
  }
  if (group.group().world_size() != next_rank) {
    return absl::InvalidArgumentError(absl::StrCat("BeginWeightSync returned world_size ",
                                                   group.group().world_size(), " for ",
                                                   endpoints.size(), " engines of ",
                                                   next_rank - 1, " ranks"));
  }
  so.backend = group.group().backend();
  so.master_address =
      options_.master_address.empty() ? group.group().master_address() : options_.master_address;
  so.master_port = group.group().master_port();
  so.group_name = group.group().group_name();
  so.init_timeout = options_.init_timeout;
  so.transfer_timeout = options_.transfer_timeout;
  ASSIGN_OR_RETURN(std::vector<weight_sync::SendTensor> tensors,
                   weight_sync::TensorsFromCheckpoint(*trained_));
  ASSIGN_OR_RETURN(std::unique_ptr<weight_sync::WeightSender> sender,
                   weight_sync::WeightSender::Connect(so));
  absl::StatusOr<weight_sync::SendReport> report =
      sender->Update(tensors, absl::StrCat(step), /*flush_cache=*/true, results);
  absl::Status destroyed = sender->DestroyGroup();
  RETURN_IF_ERROR(report.status());
  RETURN_IF_ERROR(destroyed);
  // The engines have the weights: free the trainer's copy.
  tensors.clear();
  trained_.reset();
  return report;
}

// --- The cycle -------------------------------------------------------------------------

absl::StatusOr<CycleReport> DemoTrainer::RunCycle(int64_t step) {
  CycleReport report;
  report.step = step;
  const absl::Time cycle_start = absl::Now();
  auto record = [&](const std::string& name, absl::Time start) -> absl::Status {
    PhaseRecord phase;
    phase.name = name;
    phase.duration_us = absl::ToInt64Microseconds(absl::Now() - start);
    phase.trainer_rss_bytes = name == "train" ? train_peak_rss_ : SelfRssBytes();
    ASSIGN_OR_RETURN(phase.state, GetState(true));
    report.phases.push_back(std::move(phase));
    return absl::OkStatus();
  };
  absl::Duration bookkeeping;  // time spent fetching state between phases
  auto timed = [&](const std::string& name, absl::Time start) -> absl::Status {
    const absl::Time before = absl::Now();
    absl::Status s = record(name, start);
    bookkeeping += absl::Now() - before;
    return s;
  };

  absl::Time t = absl::Now();
  ASSIGN_OR_RETURN(report.rollout, Rollout());
  RETURN_IF_ERROR(timed("rollout", t));
  t = absl::Now();
  RETURN_IF_ERROR(PrepareTraining(step).status());
  RETURN_IF_ERROR(timed("prepare_training", t));
  t = absl::Now();
  ASSIGN_OR_RETURN(report.checkpoint, Train(step));
  RETURN_IF_ERROR(timed("train", t));
  t = absl::Now();
  ASSIGN_OR_RETURN(::colo::v1::BeginWeightSyncResponse group, BeginWeightSync(step));
  RETURN_IF_ERROR(timed("begin_weight_sync", t));
  t = absl::Now();
  ASSIGN_OR_RETURN(report.send, Broadcast(step, group, &report.updates));
  RETURN_IF_ERROR(timed("broadcast", t));
  t = absl::Now();
  RETURN_IF_ERROR(FinishWeightSync(step).status());
  RETURN_IF_ERROR(timed("finish_weight_sync", t));
  report.total_us = absl::ToInt64Microseconds(absl::Now() - cycle_start - bookkeeping);
  return report;
}

// --- Formatting ------------------------------------------------------------------------

std::string FormatRollout(const RolloutReport& rollout) {
  std::string out;
  for (const EngineRollout& e : rollout.engines) {
    std::vector<std::string> versions = e.weight_versions;
    versions.erase(std::unique(versions.begin(), versions.end()), versions.end());
    absl::StrAppend(&out, "    engine ", e.engine, ": weight_version ", absl::StrJoin(versions, ","),
                    ", ", e.tokens.size(), " prompts, first -> [",
                    e.tokens.empty() ? "" : absl::StrJoin(e.tokens[0], " "), "]\n");
  }
  return out;
}

std::string FormatCycle(const CycleReport& report) {
  std::string out = absl::StrFormat("== cycle step %d  (%.1f ms)\n", report.step,
                                    report.total_us / 1e3);
  absl::StrAppend(&out, "  rollout before training:\n", FormatRollout(report.rollout));
  absl::StrAppend(&out, absl::StrFormat("  %-20s %10s  %-12s %s\n", "phase", "ms", "node",
                                        "memory per engine (rss | weights kv_cache cuda_graph "
                                        "resident, MiB) | trainer rss"));
  for (const PhaseRecord& p : report.phases) {
    std::vector<std::string> engines;
    for (const auto& e : p.state.engines()) {
      const auto& m = e.memory();
      engines.push_back(absl::StrFormat(
          "%.1f | %.1f %.1f %.1f", Mib(m.device().process_resident_bytes()),
          Mib(TagResident(m, "weights")), Mib(TagResident(m, "kv_cache")),
          Mib(TagResident(m, "cuda_graph"))));
    }
    absl::StrAppend(&out, absl::StrFormat("  %-20s %10.1f  %-12s %s | %.1f\n", p.name,
                                          p.duration_us / 1e3,
                                          ::colo::v1::Phase_Name(p.state.phase()),
                                          absl::StrJoin(engines, "  ;  "),
                                          Mib(p.trainer_rss_bytes)));
  }
  if (!report.phases.empty()) {
    std::vector<std::string> phases;
    for (const auto& d : report.phases.back().state.recent_phases()) {
      if (d.step() != report.step) continue;
      if (d.phase() != ::colo::v1::RELEASING && d.phase() != ::colo::v1::WEIGHTS_RESUMING &&
          d.phase() != ::colo::v1::KV_RESUMING) {
        continue;
      }
      phases.push_back(absl::StrFormat("%s %.1f ms", ::colo::v1::Phase_Name(d.phase()),
                                       d.duration_us() / 1e3));
    }
    absl::StrAppend(&out, "  controller transitions: ", absl::StrJoin(phases, ", "), "\n");
  }
  absl::StrAppend(&out, absl::StrFormat(
                            "  broadcast: %.2f MiB in %d buckets, ready %.1f ms, transfer %.1f "
                            "ms, commit %.1f ms -> weight_version %d\n",
                            Mib(report.send.bytes), report.send.buckets,
                            report.send.ready_us / 1e3, report.send.transfer_us / 1e3,
                            report.send.commit_us / 1e3, report.step));
  return out;
}

}  // namespace demo
}  // namespace controller
}  // namespace colo
