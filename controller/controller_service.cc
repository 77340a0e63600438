#include "controller/controller_service.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "proto/status/grpc_status.h"

namespace colo {
namespace controller {
namespace {

template <typename Response>
grpc::Status Reply(absl::StatusOr<Response> result, Response* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

absl::Status ValidateTags(const google::protobuf::RepeatedPtrField<std::string>& tags) {
  for (const std::string& tag : tags) {
    if (tag != "weights" && tag != "kv_cache" && tag != "cuda_graph") {
      return absl::InvalidArgumentError("unknown tag '" + tag +
                                        "' (expected weights, kv_cache or cuda_graph)");
    }
  }
  return absl::OkStatus();
}

}  // namespace

#define COLO_CHECK_AUTH(context)                           \
  do {                                                     \
    absl::Status colo_auth_ = auth_->Check(context);       \
    if (!colo_auth_.ok()) return ToGrpcStatus(colo_auth_); \
  } while (0)

grpc::Status ControllerService::PrepareTraining(grpc::ServerContext* context,
                                                const ::colo::v1::PrepareTrainingRequest* request,
                                                ::colo::v1::TransitionResponse* response) {
  COLO_CHECK_AUTH(context);
  return Reply(impl_->PrepareTraining(*request), response);
}

grpc::Status ControllerService::BeginWeightSync(grpc::ServerContext* context,
                                                const ::colo::v1::BeginWeightSyncRequest* request,
                                                ::colo::v1::BeginWeightSyncResponse* response) {
  COLO_CHECK_AUTH(context);
  return Reply(impl_->BeginWeightSync(*request), response);
}

grpc::Status ControllerService::FinishWeightSync(grpc::ServerContext* context,
                                                 const ::colo::v1::FinishWeightSyncRequest* request,
                                                 ::colo::v1::TransitionResponse* response) {
  COLO_CHECK_AUTH(context);
  return Reply(impl_->FinishWeightSync(*request), response);
}

grpc::Status ControllerService::PauseForUpdate(grpc::ServerContext* context,
                                               const ::colo::v1::PauseForUpdateRequest* request,
                                               ::colo::v1::TransitionResponse* response) {
  COLO_CHECK_AUTH(context);
  return Reply(impl_->PauseForUpdate(*request), response);
}

grpc::Status ControllerService::ResumeAfterUpdate(
    grpc::ServerContext* context, const ::colo::v1::ResumeAfterUpdateRequest* request,
    ::colo::v1::TransitionResponse* response) {
  COLO_CHECK_AUTH(context);
  return Reply(impl_->ResumeAfterUpdate(*request), response);
}

grpc::Status ControllerService::Recover(grpc::ServerContext* context,
                                        const ::colo::v1::RecoverRequest*,
                                        ::colo::v1::TransitionResponse* response) {
  COLO_CHECK_AUTH(context);
  return Reply(impl_->Recover(), response);
}

grpc::Status ControllerService::GetState(grpc::ServerContext*,
                                         const ::colo::v1::GetStateRequest* request,
                                         ::colo::v1::NodeState* response) {
  *response = impl_->GetState(request->include_memory());
  return grpc::Status::OK;
}

grpc::Status ControllerService::Watch(grpc::ServerContext* context, const ::colo::v1::WatchRequest*,
                                      grpc::ServerWriter<::colo::v1::NodeState>* writer) {
  uint64_t version = 0;
  ::colo::v1::NodeState state = impl_->Snapshot(&version);
  if (!writer->Write(state)) return grpc::Status::OK;
  while (!context->IsCancelled()) {
    // Wake at least every 200 ms to notice a cancelled client.
    if (!impl_->WaitForChange(version, absl::Now() + absl::Milliseconds(200))) break;
    uint64_t now_version = 0;
    state = impl_->Snapshot(&now_version);
    if (now_version == version) continue;
    version = now_version;
    if (!writer->Write(state)) break;
  }
  return grpc::Status::OK;
}

grpc::Status ControllerService::ListEngines(grpc::ServerContext*,
                                            const ::colo::v1::ListEnginesRequest*,
                                            ::colo::v1::ListEnginesResponse* response) {
  *response = impl_->ListEngines();
  return grpc::Status::OK;
}

grpc::Status ControllerService::ReleaseTags(grpc::ServerContext* context,
                                            const ::colo::v1::ReleaseTagsRequest* request,
                                            ::colo::v1::FanOutResponse* response) {
  COLO_CHECK_AUTH(context);
  absl::Status valid = ValidateTags(request->tags());
  if (!valid.ok()) return ToGrpcStatus(valid);
  *response = impl_->ReleaseTags({request->tags().begin(), request->tags().end()});
  return grpc::Status::OK;
}

grpc::Status ControllerService::ResumeTags(grpc::ServerContext* context,
                                           const ::colo::v1::ResumeTagsRequest* request,
                                           ::colo::v1::FanOutResponse* response) {
  COLO_CHECK_AUTH(context);
  absl::Status valid = ValidateTags(request->tags());
  if (!valid.ok()) return ToGrpcStatus(valid);
  *response = impl_->ResumeTags({request->tags().begin(), request->tags().end()});
  return grpc::Status::OK;
}

grpc::Status ControllerService::PauseGeneration(grpc::ServerContext* context,
                                                const ::colo::v1::PauseGenerationRequest* request,
                                                ::colo::v1::FanOutResponse* response) {
  COLO_CHECK_AUTH(context);
  const std::string& mode = request->mode();
  if (mode != "abort" && mode != "retract" && mode != "in_place") {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "pause mode '" + mode + "' is not one of abort, retract, in_place");
  }
  *response = impl_->PauseGeneration(mode);
  return grpc::Status::OK;
}

grpc::Status ControllerService::ContinueGeneration(
    grpc::ServerContext* context, const ::colo::v1::ContinueGenerationRequest* request,
    ::colo::v1::FanOutResponse* response) {
  COLO_CHECK_AUTH(context);
  const bool empty_cache = request->has_torch_empty_cache() ? request->torch_empty_cache() : true;
  *response = impl_->ContinueGeneration(empty_cache);
  return grpc::Status::OK;
}

#undef COLO_CHECK_AUTH

}  // namespace controller
}  // namespace colo
