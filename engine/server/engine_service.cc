#include "engine/server/engine_service.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/memory/memory_tag.h"
#include "engine/scheduler/pause_mode.h"
#include "engine/server/request_validation.h"
#include "engine/server/tp_fields.h"
#include "proto/status/grpc_status.h"
#include "proto/logging/logging.h"

namespace colo::engine {
namespace {

constexpr char kEngineVersion[] = "colo-engine 0.1.0";

absl::StatusOr<std::vector<MemoryTag>> ParseTags(
    const google::protobuf::RepeatedPtrField<std::string>& tags) {
  return ParseMemoryTags({tags.begin(), tags.end()});
}

colo::v1::TagState ToProto(TagState s) {
  return s == TagState::kReleased ? colo::v1::TAG_STATE_RELEASED : colo::v1::TAG_STATE_RESIDENT;
}

// OK with `*out = *result`, or the result's error as a gRPC status.
template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* out) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *out = *std::move(result);
  return grpc::Status::OK;
}

template <typename Response>
void FillTransition(const TagTransition& t, Response* response) {
  response->set_device_free_bytes_before(static_cast<int64_t>(t.before.free_bytes));
  response->set_device_free_bytes_after(static_cast<int64_t>(t.after.free_bytes));
  response->set_process_resident_bytes_before(static_cast<int64_t>(t.before.process_resident_bytes));
  response->set_process_resident_bytes_after(static_cast<int64_t>(t.after.process_resident_bytes));
}

}  // namespace

void FillMemoryInfo(const MemoryInfo& memory, const SchedulerSnapshot& snapshot,
                    colo::v1::MemoryInfo* out) {
  for (const TagInfo& t : memory.pool.tags) {
    colo::v1::TagMemory* tag = out->add_tags();
    tag->set_tag(std::string(MemoryTagName(t.tag)));
    tag->set_state(ToProto(t.state));
    tag->set_reserved_bytes(static_cast<int64_t>(t.reserved_bytes));
    tag->set_resident_bytes(static_cast<int64_t>(t.resident_bytes));
    tag->set_host_backup_bytes(static_cast<int64_t>(t.backup_bytes));
    tag->set_num_allocations(t.allocation_count);
    tag->set_host_backup(t.backup == BackupPolicy::kHostCopy);
  }
  colo::v1::CachingAllocatorStats* a = out->mutable_caching_allocator();
  a->set_allocated_bytes(static_cast<int64_t>(memory.allocator.allocated_bytes));
  a->set_reserved_bytes(static_cast<int64_t>(memory.allocator.reserved_bytes));
  a->set_peak_allocated_bytes(static_cast<int64_t>(memory.allocator.peak_allocated_bytes));
  a->set_peak_reserved_bytes(static_cast<int64_t>(memory.allocator.peak_reserved_bytes));
  a->set_num_segments(memory.allocator.segments);
  a->set_largest_free_block_bytes(static_cast<int64_t>(memory.allocator.largest_free_block_bytes));
  a->set_fragmentation(memory.allocator.fragmentation);
  a->set_num_allocs(memory.allocator.alloc_count);
  a->set_num_frees(memory.allocator.free_count);
  colo::v1::DeviceMemory* d = out->mutable_device();
  d->set_kind(memory.backend_kind);
  d->set_free_bytes(static_cast<int64_t>(memory.device_memory.free_bytes));
  d->set_total_bytes(static_cast<int64_t>(memory.device_memory.total_bytes));
  d->set_process_resident_bytes(static_cast<int64_t>(memory.device_memory.process_resident_bytes));
  d->set_device_index(memory.device);
  for (const PoolSnapshot& p : snapshot.kv_pools) {
    colo::v1::KvPoolUsage* u = out->add_kv_pools();
    u->set_pool(p.name);
    u->set_capacity_pages(p.usage.capacity);
    u->set_free_pages(p.usage.free);
    u->set_evictable_pages(p.usage.evictable);
    u->set_protected_pages(p.usage.protected_pages);
    u->set_session_held_pages(p.usage.session_held);
    u->set_in_flight_pages(p.usage.in_flight);
    u->set_page_size(p.name == "req_to_token" ? 0 : snapshot.page_size);
    u->set_bytes(p.bytes);
  }
}

EngineService::EngineService(EngineRuntime* runtime, const TokenChecker* auth)
    : runtime_(runtime), auth_(auth), weights_(runtime) {
  // A tensor-parallel rank that dies or hangs fails the engine at any time.
  if (runtime_->tp() != nullptr) runtime_->tp()->AddFailureListener([this] { UpdateHealth(); });
}

void EngineService::SetHealthService(grpc::HealthCheckServiceInterface* health) {
  {
    absl::MutexLock lock(&health_mu_);
    health_ = health;
  }
  UpdateHealth();
}

void EngineService::MarkShuttingDown() {
  absl::MutexLock lock(&health_mu_);
  shutting_down_ = true;
  if (health_ != nullptr) health_->SetServingStatus(kGenerateHealthService, false);
}

void EngineService::UpdateHealth() {
  const bool can_generate =
      ServingOf(runtime_->scheduler().Snapshot()).can_generate && runtime_->failure().empty();
  absl::MutexLock lock(&health_mu_);
  if (health_ == nullptr) return;
  health_->SetServingStatus(kGenerateHealthService, can_generate && !shutting_down_);
}

grpc::Status EngineService::CheckAuth(grpc::ServerContext* context) const {
  return ToGrpcStatus(auth_->Check(context));
}

grpc::Status EngineService::Generate(grpc::ServerContext* context,
                                     const colo::v1::GenerateRequest* request,
                                     grpc::ServerWriter<colo::v1::GenerateResponse>* writer) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  ModelLimits limits;
  limits.vocab_size = static_cast<int>(runtime_->config().vocab_size);
  limits.max_context_tokens = runtime_->max_context_tokens();
  if (absl::Status s = ValidateGenerateRequest(*request, limits); !s.ok()) return ToGrpcStatus(s);
  const colo::v1::SamplingParams& p = request->sampling_params();
  GenerateSpec spec;
  spec.rid = request->rid();
  spec.input_ids.assign(request->input_ids().begin(), request->input_ids().end());
  spec.sampling.temperature = p.temperature();
  spec.sampling.top_k = p.top_k();
  spec.sampling.top_p = p.top_p() > 0 ? p.top_p() : 1.0f;
  if (p.has_seed()) spec.seed = p.seed();  // else the scheduler draws one
  spec.max_new_tokens = p.max_new_tokens();
  spec.stop_token_ids.assign(p.stop_token_ids().begin(), p.stop_token_ids().end());
  spec.ignore_eos = p.ignore_eos();
  spec.session_id = request->session_id();
  spec.fail_if_unavailable = request->fail_if_unavailable();
  absl::StatusOr<std::shared_ptr<RequestStream>> stream =
      runtime_->scheduler().Submit(std::move(spec));
  if (!stream.ok()) return ToGrpcStatus(stream.status());
  const std::string rid = (*stream)->rid();
  while (true) {
    StreamChunk chunk = (*stream)->Next(absl::Now() + absl::Milliseconds(250));
    if (context->IsCancelled()) {
      (void)runtime_->scheduler().Abort(rid);
      return grpc::Status(grpc::StatusCode::CANCELLED, absl::StrCat("request ", rid, " cancelled"));
    }
    if (chunk.empty()) continue;
    if (chunk.finished && !chunk.error.ok()) {
      return ToGrpcStatus(absl::Status(chunk.error.code(),
                                       absl::StrCat("request ", rid, ": ", chunk.error.message())));
    }
    colo::v1::GenerateResponse response;
    response.set_rid(rid);
    response.mutable_output_ids()->Add(chunk.tokens.begin(), chunk.tokens.end());
    if (request->return_logprob()) {
      response.mutable_output_logprobs()->Add(chunk.logprobs.begin(), chunk.logprobs.end());
    }
    if (chunk.finished) {
      response.set_finish_reason(FinishReasonName(chunk.finish.reason));
      response.set_prompt_tokens(chunk.finish.prompt_tokens);
      response.set_cached_tokens(chunk.finish.cached_tokens);
      response.set_completion_tokens(chunk.finish.completion_tokens);
      response.set_weight_version(chunk.finish.weight_version);
    }
    if (!writer->Write(response)) {
      (void)runtime_->scheduler().Abort(rid);
      return grpc::Status(grpc::StatusCode::CANCELLED,
                          absl::StrCat("request ", rid, ": the client went away"));
    }
    if (chunk.finished) return grpc::Status::OK;
  }
}

grpc::Status EngineService::OpenSession(grpc::ServerContext* context,
                                        const colo::v1::OpenSessionRequest* request,
                                        colo::v1::OpenSessionResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  if (request->capacity_tokens() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("capacity_tokens must be >= 0, got ",
                                     request->capacity_tokens()));
  }
  absl::StatusOr<std::string> id =
      runtime_->scheduler().OpenSession(request->session_id(), request->capacity_tokens());
  if (!id.ok()) return ToGrpcStatus(id.status());
  response->set_session_id(*id);
  return grpc::Status::OK;
}

grpc::Status EngineService::CloseSession(grpc::ServerContext* context,
                                         const colo::v1::CloseSessionRequest* request,
                                         colo::v1::CloseSessionResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  if (request->session_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "session_id is empty");
  }
  absl::StatusOr<int64_t> freed = runtime_->scheduler().CloseSession(request->session_id());
  if (!freed.ok()) return ToGrpcStatus(freed.status());
  response->set_freed_tokens(*freed);
  return grpc::Status::OK;
}

grpc::Status EngineService::Abort(grpc::ServerContext* context,
                                  const colo::v1::AbortRequest* request,
                                  colo::v1::AbortResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  if (request->rid().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rid is empty");
  }
  absl::StatusOr<bool> found = runtime_->scheduler().Abort(request->rid());
  if (!found.ok()) return ToGrpcStatus(found.status());
  response->set_found(*found);
  return grpc::Status::OK;
}

grpc::Status EngineService::PauseGeneration(grpc::ServerContext* context,
                                            const colo::v1::PauseGenerationRequest* request,
                                            colo::v1::PauseGenerationResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<PauseMode> mode = ParsePauseMode(request->mode());
  if (!mode.ok()) return ToGrpcStatus(mode.status());
  absl::StatusOr<PauseResult> result = runtime_->scheduler().Pause(*mode);
  UpdateHealth();
  if (!result.ok()) return ToGrpcStatus(result.status());
  response->set_mode(std::string(PauseModeName(result->mode)));
  response->set_num_aborted(result->num_aborted);
  response->set_num_retracted(result->num_retracted);
  response->set_num_kept(result->num_kept);
  AddRankCaches(*runtime_, *result, response);
  return grpc::Status::OK;
}

grpc::Status EngineService::ContinueGeneration(grpc::ServerContext* context,
                                               const colo::v1::ContinueGenerationRequest* request,
                                               colo::v1::ContinueGenerationResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  const bool empty_cache = request->has_torch_empty_cache() ? request->torch_empty_cache() : true;
  absl::StatusOr<ContinueResult> result = runtime_->scheduler().Continue(empty_cache);
  UpdateHealth();
  if (!result.ok()) return ToGrpcStatus(result.status());
  response->set_reserved_bytes_before(static_cast<int64_t>(result->reserved_bytes_before));
  response->set_reserved_bytes_after(static_cast<int64_t>(result->reserved_bytes_after));
  AddRankCaches(*runtime_, *result, response);
  return grpc::Status::OK;
}

grpc::Status EngineService::ReleaseTags(grpc::ServerContext* context,
                                        const colo::v1::ReleaseTagsRequest* request,
                                        colo::v1::ReleaseTagsResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<std::vector<MemoryTag>> tags = ParseTags(request->tags());
  if (!tags.ok()) return ToGrpcStatus(tags.status());
  absl::StatusOr<TagTransition> t = runtime_->scheduler().Release(*tags);
  UpdateHealth();
  if (!t.ok()) return ToGrpcStatus(t.status());
  for (const TagReleaseReport& r : t->release.tags) {
    colo::v1::TagBytes* b = response->add_tags();
    b->set_tag(std::string(MemoryTagName(r.tag)));
    b->set_bytes(static_cast<int64_t>(r.bytes_freed));
    b->set_no_op(r.no_op);
    b->set_backup_bytes(static_cast<int64_t>(r.backup_bytes));
  }
  response->set_caching_allocator_reserved_bytes_before(
      static_cast<int64_t>(t->allocator_reserved_before));
  response->set_caching_allocator_reserved_bytes_after(
      static_cast<int64_t>(t->allocator_reserved_after));
  FillTransition(*t, response);
  AddRankTransitions(*t, response);
  return grpc::Status::OK;
}

grpc::Status EngineService::ResumeTags(grpc::ServerContext* context,
                                       const colo::v1::ResumeTagsRequest* request,
                                       colo::v1::ResumeTagsResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<std::vector<MemoryTag>> tags = ParseTags(request->tags());
  if (!tags.ok()) return ToGrpcStatus(tags.status());
  absl::StatusOr<TagTransition> t = runtime_->scheduler().Resume(*tags);
  UpdateHealth();
  if (!t.ok()) return ToGrpcStatus(t.status());
  for (const TagResumeReport& r : t->resume.tags) {
    colo::v1::TagBytes* b = response->add_tags();
    b->set_tag(std::string(MemoryTagName(r.tag)));
    b->set_bytes(static_cast<int64_t>(r.bytes_mapped));
    b->set_no_op(r.no_op);
    b->set_backup_bytes(static_cast<int64_t>(r.bytes_restored));
  }
  FillTransition(*t, response);
  AddRankTransitions(*t, response);
  return grpc::Status::OK;
}

grpc::Status EngineService::InitWeightsUpdateGroup(
    grpc::ServerContext* context, const colo::v1::InitWeightsUpdateGroupRequest* request,
    colo::v1::InitWeightsUpdateGroupResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  return Reply(weights_.InitGroup(*request), response);
}

grpc::Status EngineService::DestroyWeightsUpdateGroup(
    grpc::ServerContext* context, const colo::v1::DestroyWeightsUpdateGroupRequest* request,
    colo::v1::DestroyWeightsUpdateGroupResponse*) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  return ToGrpcStatus(weights_.DestroyGroup(*request));
}

grpc::Status EngineService::UpdateWeightsFromDistributed(
    grpc::ServerContext* context, const colo::v1::UpdateWeightsFromDistributedRequest* request,
    colo::v1::UpdateWeightsResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<colo::v1::UpdateWeightsResponse> r = weights_.UpdateFromDistributed(*request);
  UpdateHealth();
  return Reply(std::move(r), response);
}

grpc::Status EngineService::UpdateWeightsFromTensor(
    grpc::ServerContext* context, grpc::ServerReader<colo::v1::WeightChunk>* reader,
    colo::v1::UpdateWeightsResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<colo::v1::UpdateWeightsResponse> r = weights_.UpdateFromTensor(reader);
  UpdateHealth();
  return Reply(std::move(r), response);
}

grpc::Status EngineService::UpdateWeightsFromDisk(
    grpc::ServerContext* context, const colo::v1::UpdateWeightsFromDiskRequest* request,
    colo::v1::UpdateWeightsResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<colo::v1::UpdateWeightsResponse> r = weights_.UpdateFromDisk(*request);
  UpdateHealth();
  return Reply(std::move(r), response);
}

grpc::Status EngineService::GetWeightChecksums(grpc::ServerContext*,
                                               const colo::v1::GetWeightChecksumsRequest* request,
                                               colo::v1::GetWeightChecksumsResponse* response) {
  return Reply(weights_.Checksums(*request), response);
}

grpc::Status EngineService::ListWeightsUpdateGroups(
    grpc::ServerContext*, const colo::v1::ListWeightsUpdateGroupsRequest*,
    colo::v1::ListWeightsUpdateGroupsResponse* response) {
  *response = weights_.ListGroups();
  return grpc::Status::OK;
}

grpc::Status EngineService::UpdateWeightsFromIpc(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<colo::v1::IpcUpdateReply, colo::v1::IpcUpdateRequest>* stream) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<colo::v1::UpdateWeightsResponse> r = weights_.UpdateFromIpc(stream);
  UpdateHealth();
  if (!r.ok()) return ToGrpcStatus(r.status());
  colo::v1::IpcUpdateReply done;
  *done.mutable_done() = *std::move(r);
  stream->Write(done);
  return grpc::Status::OK;
}

grpc::Status EngineService::FlushCache(grpc::ServerContext* context,
                                       const colo::v1::FlushCacheRequest*,
                                       colo::v1::FlushCacheResponse* response) {
  if (grpc::Status s = CheckAuth(context); !s.ok()) return s;
  absl::StatusOr<int64_t> freed = runtime_->scheduler().Flush();
  if (!freed.ok()) return ToGrpcStatus(freed.status());
  response->set_freed_pages(*freed);
  return grpc::Status::OK;
}

grpc::Status EngineService::GetMemoryInfo(grpc::ServerContext*,
                                          const colo::v1::GetMemoryInfoRequest*,
                                          colo::v1::GetMemoryInfoResponse* response) {
  absl::StatusOr<MemoryInfo> memory = runtime_->CollectMemory();
  if (!memory.ok()) return ToGrpcStatus(memory.status());
  FillMemoryInfo(*memory, runtime_->scheduler().Snapshot(), response->mutable_memory());
  if (absl::Status s = AddRankMemory(*runtime_, response->mutable_memory()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return grpc::Status::OK;
}

grpc::Status EngineService::GetServerInfo(grpc::ServerContext*,
                                          const colo::v1::GetServerInfoRequest*,
                                          colo::v1::GetServerInfoResponse* response) {
  const ModelConfig& c = runtime_->config();
  colo::v1::ModelInfo* m = response->mutable_model();
  m->set_path(runtime_->options().model_dir);
  m->set_architecture(c.model_type);
  m->set_num_layers(c.num_layers);
  m->set_hidden_size(static_cast<int32_t>(c.hidden_size));
  m->set_num_attention_heads(c.num_heads);
  m->set_num_key_value_heads(c.num_kv_heads);
  m->set_head_dim(c.head_dim);
  m->set_vocab_size(static_cast<int32_t>(c.vocab_size));
  m->set_max_position_embeddings(static_cast<int32_t>(c.max_position_embeddings));
  m->set_sliding_window(static_cast<int32_t>(c.sliding_window));
  for (LayerType t : c.layer_types) {
    m->add_layer_types(t == LayerType::kSlidingAttention ? "sliding_attention" : "full_attention");
  }
  m->set_dtype("float32");
  m->set_num_parameters(c.NumParameters());
  m->set_eos_token_id(runtime_->eos_token_id());
  const SchedulerSnapshot s = runtime_->scheduler().Snapshot();
  const ServingStatus serving = ServingOf(s);
  response->set_state(serving.state);
  response->set_weight_version(s.weight_version);
  if (s.state.paused_mode.has_value()) {
    response->set_paused_mode(std::string(PauseModeName(*s.state.paused_mode)));
  }
  for (MemoryTag t : s.released_tags) response->add_released_tags(std::string(MemoryTagName(t)));
  response->set_device(std::string(runtime_->backend().kind()));
  response->set_page_size(s.page_size);
  response->set_num_running(s.num_running);
  response->set_num_waiting(s.num_waiting);
  response->set_kv_capacity_tokens(s.kv_capacity_tokens);
  response->set_version(kEngineVersion);
  response->set_instance_id(runtime_->instance_id());
  response->set_memory_saver_enabled(runtime_->options().enable_memory_saver);
  response->set_reason(serving.reason);
  response->set_kv_audits(s.kv_audits_total);
  response->set_kv_audit_violations(s.kv_audit_violations_total);
  response->set_last_kv_audit_error(s.last_kv_audit_error);
  response->set_num_sessions(s.num_sessions);
  FillTpServerInfo(*runtime_, response);
  weights_.FillServerInfo(response);
  return grpc::Status::OK;
}

}  // namespace colo::engine
