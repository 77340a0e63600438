#include "controller/testing/fake_engine.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/status/grpc_status.h"

namespace colo {
namespace controller {

FakeEngine::FakeEngine(const Options& options) : options_(options) {
  absl::MutexLock lock(&mu_);
  tags_["weights"].bytes = options.weights_bytes;
  tags_["kv_cache"].bytes = options.kv_cache_bytes;
  tags_["cuda_graph"].bytes = options.cuda_graph_bytes;
}

absl::Status FakeEngine::EnterLocked(const std::string& method, const std::string& call) {
  calls_.push_back(call);
  if (unavailable_) {
    return absl::UnavailableError(absl::StrCat("fake engine ", options_.address, " is down"));
  }
  // A wedged engine: once a call is stuck, server-info probes get stuck too
  // (before that they answer, so a test can start the call it wants stuck).
  if (hang_ && (method != "GetServerInfo" || hanging_ > 0)) {
    const int64_t epoch = cancel_epoch_;
    ++hanging_;
    cv_.SignalAll();
    while (hang_ && cancel_epoch_ == epoch) cv_.Wait(&mu_);
    --hanging_;
    if (cancel_epoch_ != epoch) return absl::CancelledError("call cancelled");
  }
  auto it = fail_next_.find(method);
  if (it != fail_next_.end()) {
    absl::Status status = it->second;
    fail_next_.erase(it);
    return status;
  }
  return absl::OkStatus();
}

int64_t FakeEngine::MappedBytesLocked() const {
  int64_t mapped = caching_reserved_;
  for (const auto& [name, tag] : tags_) {
    if (tag.resident || tag.leaked) mapped += tag.bytes;
  }
  return mapped;
}

int64_t FakeEngine::DeviceFreeLocked() const {
  return options_.device_total_bytes - MappedBytesLocked();
}

int64_t FakeEngine::RssLocked() const { return options_.base_rss_bytes + MappedBytesLocked(); }

absl::Status FakeEngine::CheckTagsLocked(std::vector<std::string>* tags) const {
  if (tags->empty()) {
    for (const auto& [name, tag] : tags_) tags->push_back(name);
  }
  for (const std::string& tag : *tags) {
    if (tags_.find(tag) == tags_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown tag '", tag, "'"));
    }
  }
  return absl::OkStatus();
}

void FakeEngine::SetIpcDomain(const std::string& domain) {
  absl::MutexLock lock(&mu_);
  ipc_domain_ = domain;
}

absl::StatusOr<::colo::v1::GetServerInfoResponse> FakeEngine::GetServerInfo() {
  absl::MutexLock lock(&mu_);
  absl::Status entered = EnterLocked("GetServerInfo", "GetServerInfo");
  if (!entered.ok()) return entered;
  return InfoLocked();
}

::colo::v1::GetServerInfoResponse FakeEngine::InfoLocked() const {
  ::colo::v1::GetServerInfoResponse response;
  response.set_instance_id(absl::StrCat(options_.address, "#", incarnation_));
  response.set_state(paused_ ? "paused" : "serving");
  response.set_paused_mode(paused_mode_);
  response.set_device(options_.device_kind);
  response.set_weight_version("v0");
  response.set_memory_saver_enabled(true);
  response.set_ipc_domain(ipc_domain_);
  for (const auto& [name, tag] : tags_) {
    if (!tag.resident) response.add_released_tags(name);
  }
  return response;
}

absl::StatusOr<::colo::v1::GetMemoryInfoResponse> FakeEngine::GetMemoryInfo() {
  absl::MutexLock lock(&mu_);
  absl::Status entered = EnterLocked("GetMemoryInfo", "GetMemoryInfo");
  if (!entered.ok()) return entered;
  ::colo::v1::GetMemoryInfoResponse response;
  ::colo::v1::MemoryInfo* info = response.mutable_memory();
  for (const auto& [name, tag] : tags_) {
    ::colo::v1::TagMemory* t = info->add_tags();
    t->set_tag(name);
    t->set_state(tag.resident ? ::colo::v1::TAG_STATE_RESIDENT : ::colo::v1::TAG_STATE_RELEASED);
    t->set_reserved_bytes(tag.bytes);
    const bool show_leak = tag.leaked && !(name == lying_tag_ && hide_lie_);
    t->set_resident_bytes(tag.resident || show_leak ? tag.bytes : 0);
    t->set_num_allocations(1);
  }
  info->mutable_caching_allocator()->set_reserved_bytes(caching_reserved_);
  ::colo::v1::DeviceMemory* device = info->mutable_device();
  device->set_kind(options_.device_kind);
  device->set_total_bytes(options_.device_total_bytes);
  device->set_free_bytes(DeviceFreeLocked());
  if (options_.device_kind == "cpu") device->set_process_resident_bytes(RssLocked());
  return response;
}

absl::StatusOr<::colo::v1::PauseGenerationResponse> FakeEngine::PauseGeneration(
    const std::string& mode) {
  absl::MutexLock lock(&mu_);
  absl::Status entered =
      EnterLocked("PauseGeneration", absl::StrCat("PauseGeneration(", mode, ")"));
  if (!entered.ok()) return entered;
  if (mode != "abort" && mode != "retract" && mode != "in_place") {
    return absl::InvalidArgumentError(absl::StrCat("bad pause mode '", mode, "'"));
  }
  paused_ = true;
  paused_mode_ = mode;
  ::colo::v1::PauseGenerationResponse response;
  response.set_mode(mode);
  return response;
}

absl::StatusOr<::colo::v1::ContinueGenerationResponse> FakeEngine::ContinueGeneration(
    bool empty_cache) {
  absl::MutexLock lock(&mu_);
  absl::Status entered =
      EnterLocked("ContinueGeneration",
                  absl::StrCat("ContinueGeneration(", empty_cache ? "empty" : "keep", ")"));
  if (!entered.ok()) return entered;
  for (const char* needed : {"weights", "kv_cache"}) {
    if (!tags_[needed].resident) {
      return absl::FailedPreconditionError(absl::StrCat("tag ", needed, " is released"));
    }
  }
  ::colo::v1::ContinueGenerationResponse response;
  response.set_reserved_bytes_before(caching_reserved_);
  if (empty_cache) caching_reserved_ = 0;
  response.set_reserved_bytes_after(caching_reserved_);
  paused_ = false;
  paused_mode_.clear();
  return response;
}

absl::StatusOr<::colo::v1::ReleaseTagsResponse> FakeEngine::ReleaseTags(
    std::vector<std::string> tags) {
  absl::MutexLock lock(&mu_);
  absl::Status entered =
      EnterLocked("ReleaseTags", absl::StrCat("ReleaseTags(", absl::StrJoin(tags, ","), ")"));
  if (!entered.ok()) return entered;
  absl::Status valid = CheckTagsLocked(&tags);
  if (!valid.ok()) return valid;
  if (!paused_) return absl::FailedPreconditionError("release needs a paused engine");
  ::colo::v1::ReleaseTagsResponse response;
  response.set_device_free_bytes_before(DeviceFreeLocked());
  response.set_process_resident_bytes_before(RssLocked());
  for (const std::string& name : tags) {
    Tag& tag = tags_[name];
    ::colo::v1::TagBytes* out = response.add_tags();
    out->set_tag(name);
    if (!tag.resident) {
      out->set_no_op(true);
      continue;
    }
    out->set_bytes(tag.bytes);
    tag.resident = false;
    if (name == lying_tag_) tag.leaked = true;
  }
  response.set_device_free_bytes_after(DeviceFreeLocked());
  response.set_process_resident_bytes_after(RssLocked());
  if (options_.device_kind != "cpu") {
    response.set_process_resident_bytes_before(0);
    response.set_process_resident_bytes_after(0);
  }
  return response;
}

absl::StatusOr<::colo::v1::ResumeTagsResponse> FakeEngine::ResumeTags(
    std::vector<std::string> tags) {
  absl::MutexLock lock(&mu_);
  absl::Status entered =
      EnterLocked("ResumeTags", absl::StrCat("ResumeTags(", absl::StrJoin(tags, ","), ")"));
  if (!entered.ok()) return entered;
  absl::Status valid = CheckTagsLocked(&tags);
  if (!valid.ok()) return valid;
  ::colo::v1::ResumeTagsResponse response;
  response.set_device_free_bytes_before(DeviceFreeLocked());
  for (const std::string& name : tags) {
    Tag& tag = tags_[name];
    ::colo::v1::TagBytes* out = response.add_tags();
    out->set_tag(name);
    if (tag.resident) {
      out->set_no_op(true);
      continue;
    }
    tag.resident = true;
    tag.leaked = false;
    out->set_bytes(tag.bytes);
  }
  response.set_device_free_bytes_after(DeviceFreeLocked());
  return response;
}

void FakeEngine::SetUnavailable(bool unavailable) {
  absl::MutexLock lock(&mu_);
  unavailable_ = unavailable;
}

void FakeEngine::SetLyingTag(const std::string& tag, bool hide_in_memory_info) {
  absl::MutexLock lock(&mu_);
  lying_tag_ = tag;
  hide_lie_ = hide_in_memory_info;
}

void FakeEngine::FailNext(const std::string& method, absl::Status status) {
  absl::MutexLock lock(&mu_);
  fail_next_[method] = std::move(status);
}

void FakeEngine::SetHang(bool hang) {
  absl::MutexLock lock(&mu_);
  hang_ = hang;
  cv_.SignalAll();
}

void FakeEngine::WaitUntilHanging() {
  absl::MutexLock lock(&mu_);
  while (hanging_ == 0) cv_.Wait(&mu_);
}

void FakeEngine::CancelHanging() {
  absl::MutexLock lock(&mu_);
  ++cancel_epoch_;
  cv_.SignalAll();
}

std::vector<std::string> FakeEngine::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

void FakeEngine::ClearCalls() {
  absl::MutexLock lock(&mu_);
  calls_.clear();
}

bool FakeEngine::paused() const {
  absl::MutexLock lock(&mu_);
  return paused_;
}

bool FakeEngine::tag_resident(const std::string& tag) const {
  absl::MutexLock lock(&mu_);
  auto it = tags_.find(tag);
  return it != tags_.end() && it->second.resident;
}

int64_t FakeEngine::probes() const {
  absl::MutexLock lock(&mu_);
  return probes_;
}

absl::StatusOr<::colo::v1::GetServerInfoResponse> FakeEngine::Probe() {
  absl::MutexLock lock(&mu_);
  ++probes_;
  if (unavailable_) return absl::UnavailableError("fake engine is down");
  if (hang_ && hanging_ > 0) {
    return absl::DeadlineExceededError("probe deadline exceeded (engine hangs)");
  }
  return InfoLocked();
}

void FakeEngine::Restart() {
  absl::MutexLock lock(&mu_);
  ++incarnation_;
  for (auto& [name, tag] : tags_) {
    tag.resident = true;
    tag.leaked = false;
  }
  paused_ = false;
  paused_mode_.clear();
  unavailable_ = false;
}

// --- gRPC service -------------------------------------------------------------

namespace {

template <typename Response>
grpc::Status Answer(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace

grpc::Status FakeRolloutEngineService::GetServerInfo(grpc::ServerContext*,
                                                     const ::colo::v1::GetServerInfoRequest*,
                                                     ::colo::v1::GetServerInfoResponse* response) {
  return Answer(engine_->GetServerInfo(), response);
}

grpc::Status FakeRolloutEngineService::GetMemoryInfo(grpc::ServerContext*,
                                                     const ::colo::v1::GetMemoryInfoRequest*,
                                                     ::colo::v1::GetMemoryInfoResponse* response) {
  return Answer(engine_->GetMemoryInfo(), response);
}

grpc::Status FakeRolloutEngineService::PauseGeneration(
    grpc::ServerContext*, const ::colo::v1::PauseGenerationRequest* request,
    ::colo::v1::PauseGenerationResponse* response) {
  return Answer(engine_->PauseGeneration(request->mode()), response);
}

grpc::Status FakeRolloutEngineService::ContinueGeneration(
    grpc::ServerContext*, const ::colo::v1::ContinueGenerationRequest* request,
    ::colo::v1::ContinueGenerationResponse* response) {
  const bool empty = request->has_torch_empty_cache() ? request->torch_empty_cache() : true;
  return Answer(engine_->ContinueGeneration(empty), response);
}

grpc::Status FakeRolloutEngineService::ReleaseTags(grpc::ServerContext*,
                                                   const ::colo::v1::ReleaseTagsRequest* request,
                                                   ::colo::v1::ReleaseTagsResponse* response) {
  return Answer(engine_->ReleaseTags({request->tags().begin(), request->tags().end()}), response);
}

grpc::Status FakeRolloutEngineService::ResumeTags(grpc::ServerContext*,
                                                  const ::colo::v1::ResumeTagsRequest* request,
                                                  ::colo::v1::ResumeTagsResponse* response) {
  return Answer(engine_->ResumeTags({request->tags().begin(), request->tags().end()}), response);
}

grpc::Status FakeRolloutEngineService::Generate(
    grpc::ServerContext*, const ::colo::v1::GenerateRequest* request,
    grpc::ServerWriter<::colo::v1::GenerateResponse>* writer) {
  if (request->input_ids().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty input_ids");
  }
  const int n = request->sampling_params().max_new_tokens() > 0
                    ? request->sampling_params().max_new_tokens()
                    : 4;
  const int last = request->input_ids(request->input_ids_size() - 1);
  for (int i = 1; i <= n; ++i) {
    ::colo::v1::GenerateResponse response;
    response.set_rid(request->rid().empty() ? "fake-rid" : request->rid());
    response.add_output_ids(last + i);
    if (i == n) {
      response.set_finish_reason("length");
      response.set_prompt_tokens(request->input_ids_size());
      response.set_completion_tokens(n);
      response.set_weight_version("v0");
    }
    writer->Write(response);
  }
  return grpc::Status::OK;
}

}  // namespace controller
}  // namespace colo
