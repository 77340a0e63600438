// colo.v1.MemoryController over gRPC: a thin layer over ControllerImpl that
// checks the bearer token on mutating RPCs and maps statuses.
#ifndef COLO_CONTROLLER_CONTROLLER_SERVICE_H_
#define COLO_CONTROLLER_CONTROLLER_SERVICE_H_

#include "absl/time/time.h"
#include "colo/v1/controller.grpc.pb.h"
#include "controller/controller_impl.h"
#include "proto/server/auth.h"

namespace colo {
namespace controller {

// Thread-safe. `impl` and `auth` are not owned and must outlive the service.
class ControllerService final : public ::colo::v1::MemoryController::Service {
 public:
  ControllerService(ControllerImpl* impl, const TokenChecker* auth) : impl_(impl), auth_(auth) {}

  grpc::Status PrepareTraining(grpc::ServerContext* context,
                               const ::colo::v1::PrepareTrainingRequest* request,
                               ::colo::v1::TransitionResponse* response) override;
  grpc::Status BeginWeightSync(grpc::ServerContext* context,
                               const ::colo::v1::BeginWeightSyncRequest* request,
                               ::colo::v1::BeginWeightSyncResponse* response) override;
  grpc::Status FinishWeightSync(grpc::ServerContext* context,
                                const ::colo::v1::FinishWeightSyncRequest* request,
                                ::colo::v1::TransitionResponse* response) override;
  grpc::Status PauseForUpdate(grpc::ServerContext* context,
                              const ::colo::v1::PauseForUpdateRequest* request,
                              ::colo::v1::TransitionResponse* response) override;
  grpc::Status ResumeAfterUpdate(grpc::ServerContext* context,
                                 const ::colo::v1::ResumeAfterUpdateRequest* request,
                                 ::colo::v1::TransitionResponse* response) override;
  grpc::Status Recover(grpc::ServerContext* context, const ::colo::v1::RecoverRequest* request,
                       ::colo::v1::TransitionResponse* response) override;
  grpc::Status GetState(grpc::ServerContext* context, const ::colo::v1::GetStateRequest* request,
                        ::colo::v1::NodeState* response) override;
  // Streams the current state, then each change, until the client cancels
  // or the controller shuts down (then OK).
  grpc::Status Watch(grpc::ServerContext* context, const ::colo::v1::WatchRequest* request,
                     grpc::ServerWriter<::colo::v1::NodeState>* writer) override;
  grpc::Status ListEngines(grpc::ServerContext* context,
                           const ::colo::v1::ListEnginesRequest* request,
                           ::colo::v1::ListEnginesResponse* response) override;
  grpc::Status ReleaseTags(grpc::ServerContext* context,
                           const ::colo::v1::ReleaseTagsRequest* request,
                           ::colo::v1::FanOutResponse* response) override;
  grpc::Status ResumeTags(grpc::ServerContext* context,
                          const ::colo::v1::ResumeTagsRequest* request,
                          ::colo::v1::FanOutResponse* response) override;
  grpc::Status PauseGeneration(grpc::ServerContext* context,
                               const ::colo::v1::PauseGenerationRequest* request,
                               ::colo::v1::FanOutResponse* response) override;
  grpc::Status ContinueGeneration(grpc::ServerContext* context,
                                  const ::colo::v1::ContinueGenerationRequest* request,
                                  ::colo::v1::FanOutResponse* response) override;

 private:
  ControllerImpl* const impl_;
  const TokenChecker* const auth_;
};

}  // namespace controller
}  // namespace colo

#endif  // COLO_CONTROLLER_CONTROLLER_SERVICE_H_
