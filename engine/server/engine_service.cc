#include "engine/server/engine_service.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/memory/memory_tag.h"
#include "engine/scheduler/pause_mode.h"
#include "proto/base/grpc_status.h"

namespace colo::engine {
namespace {

// The capability behind an RPC has not been built yet: say which, never fake
// a success.
grpc::Status NotBuilt(absl::string_view rpc, absl::string_view capability) {
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                      absl::StrCat(rpc, ": ", capability,
                                   " is not built in this colo-engine yet"));
}

grpc::Status ValidateTags(const google::protobuf::RepeatedPtrField<std::string>& tags) {
  return ToGrpcStatus(ParseMemoryTags({tags.begin(), tags.end()}).status());
}

}  // namespace

EngineService::EngineService(EngineOptions options) : options_(std::move(options)) {}

grpc::Status EngineService::Generate(grpc::ServerContext*, const colo::v1::GenerateRequest*,
                                     grpc::ServerWriter<colo::v1::GenerateResponse>*) {
  return NotBuilt("Generate", "the scheduler (continuous batching)");
}

grpc::Status EngineService::OpenSession(grpc::ServerContext*,
                                        const colo::v1::OpenSessionRequest* request,
                                        colo::v1::OpenSessionResponse*) {
  if (request->capacity_tokens() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("capacity_tokens must be >= 0, got ",
                                     request->capacity_tokens()));
  }
  return NotBuilt("OpenSession", "the session-aware KV cache");
}

grpc::Status EngineService::CloseSession(grpc::ServerContext*,
                                         const colo::v1::CloseSessionRequest* request,
                                         colo::v1::CloseSessionResponse*) {
  if (request->session_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "session_id is empty");
  }
  return NotBuilt("CloseSession", "the session-aware KV cache");
}

grpc::Status EngineService::Abort(grpc::ServerContext*, const colo::v1::AbortRequest* request,
                                  colo::v1::AbortResponse*) {
  if (request->rid().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "rid is empty");
  }
  return NotBuilt("Abort", "the scheduler");
}

grpc::Status EngineService::PauseGeneration(grpc::ServerContext*,
                                            const colo::v1::PauseGenerationRequest* request,
                                            colo::v1::PauseGenerationResponse*) {
  if (absl::Status s = ParsePauseMode(request->mode()).status(); !s.ok()) {
    return ToGrpcStatus(s);
  }
  return NotBuilt("PauseGeneration", "the scheduler");
}

grpc::Status EngineService::ContinueGeneration(grpc::ServerContext*,
                                               const colo::v1::ContinueGenerationRequest*,
                                               colo::v1::ContinueGenerationResponse*) {
  return NotBuilt("ContinueGeneration", "the scheduler");
}

grpc::Status EngineService::ReleaseTags(grpc::ServerContext*,
                                        const colo::v1::ReleaseTagsRequest* request,
                                        colo::v1::ReleaseTagsResponse*) {
  if (grpc::Status s = ValidateTags(request->tags()); !s.ok()) return s;
  return NotBuilt("ReleaseTags", "the engine's tagged memory pool");
}

grpc::Status EngineService::ResumeTags(grpc::ServerContext*,
                                       const colo::v1::ResumeTagsRequest* request,
                                       colo::v1::ResumeTagsResponse*) {
  if (grpc::Status s = ValidateTags(request->tags()); !s.ok()) return s;
  return NotBuilt("ResumeTags", "the engine's tagged memory pool");
}

grpc::Status EngineService::InitWeightsUpdateGroup(
    grpc::ServerContext*, const colo::v1::InitWeightsUpdateGroupRequest* request,
    colo::v1::InitWeightsUpdateGroupResponse*) {
  if (request->backend() != "nccl" && request->backend() != "gloo") {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("backend must be nccl or gloo, got '",
                                     request->backend(), "'"));
  }
  return NotBuilt("InitWeightsUpdateGroup", "weight sync over NCCL/Gloo");
}

grpc::Status EngineService::DestroyWeightsUpdateGroup(
    grpc::ServerContext*, const colo::v1::DestroyWeightsUpdateGroupRequest*,
    colo::v1::DestroyWeightsUpdateGroupResponse*) {
  return NotBuilt("DestroyWeightsUpdateGroup", "weight sync over NCCL/Gloo");
}

grpc::Status EngineService::UpdateWeightsFromDistributed(
    grpc::ServerContext*, const colo::v1::UpdateWeightsFromDistributedRequest*,
    colo::v1::UpdateWeightsResponse*) {
  return NotBuilt("UpdateWeightsFromDistributed", "weight sync over NCCL/Gloo");
}

grpc::Status EngineService::UpdateWeightsFromTensor(grpc::ServerContext*,
                                                    grpc::ServerReader<colo::v1::WeightChunk>*,
                                                    colo::v1::UpdateWeightsResponse*) {
  return NotBuilt("UpdateWeightsFromTensor", "the weight update path");
}

grpc::Status EngineService::UpdateWeightsFromDisk(grpc::ServerContext*,
                                                  const colo::v1::UpdateWeightsFromDiskRequest*,
                                                  colo::v1::UpdateWeightsResponse*) {
  return NotBuilt("UpdateWeightsFromDisk", "the weight update path");
}

grpc::Status EngineService::GetWeightChecksums(grpc::ServerContext*,
                                               const colo::v1::GetWeightChecksumsRequest*,
                                               colo::v1::GetWeightChecksumsResponse*) {
  return NotBuilt("GetWeightChecksums", "the weight update path");
}

grpc::Status EngineService::FlushCache(grpc::ServerContext*, const colo::v1::FlushCacheRequest*,
                                       colo::v1::FlushCacheResponse*) {
  return NotBuilt("FlushCache", "the radix prefix cache");
}

grpc::Status EngineService::GetMemoryInfo(grpc::ServerContext*,
                                          const colo::v1::GetMemoryInfoRequest*,
                                          colo::v1::GetMemoryInfoResponse*) {
  return NotBuilt("GetMemoryInfo", "the engine's tagged memory pool");
}

grpc::Status EngineService::GetServerInfo(grpc::ServerContext*,
                                          const colo::v1::GetServerInfoRequest*,
                                          colo::v1::GetServerInfoResponse* response) {
  response->mutable_model()->set_path(options_.model_dir);
  response->set_device(options_.device);
  response->set_page_size(options_.page_size);
  response->set_memory_saver_enabled(options_.enable_memory_saver);
  response->set_state("starting");
  response->set_reason("the model runtime is not built in this colo-engine yet");
  return grpc::Status::OK;
}

}  // namespace colo::engine
