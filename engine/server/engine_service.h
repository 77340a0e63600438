// The gRPC edge of colo-engine: a thin adapter from RolloutEngine RPCs to the
// EngineRuntime (scheduler commands, memory snapshots). Validates requests
// (INVALID_ARGUMENT for malformed input), checks the auth token of mutating
// RPCs, maps absl::Status to grpc::Status with colo::ToGrpcStatus, and keeps
// the "colo.generate" health service in step with the engine's state
// (SERVING only while it can generate: not paused, nothing released, weights
// valid) for readiness probes.
//
// Thread-safe: gRPC calls methods concurrently.
#ifndef COLO_ENGINE_SERVER_ENGINE_SERVICE_H_
#define COLO_ENGINE_SERVER_ENGINE_SERVICE_H_

#include <atomic>

#include "absl/synchronization/mutex.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/server/engine_options.h"
#include "engine/server/engine_runtime.h"
#include "engine/server/weight_update_service.h"
#include "grpcpp/health_check_service_interface.h"
#include "proto/server/auth.h"

namespace colo::engine {

// Name of the readiness health service.
inline constexpr char kGenerateHealthService[] = "colo.generate";

class EngineService final : public colo::v1::RolloutEngine::Service {
 public:
  // `runtime` and `auth` must outlive the service.
  EngineService(EngineRuntime* runtime, const TokenChecker* auth);

  // Called once the server runs; the service then keeps "colo.generate"
  // up to date. Safe to call concurrently with RPCs.
  void SetHealthService(grpc::HealthCheckServiceInterface* health);
  // Marks the generate health NOT_SERVING for good (shutdown).
  void MarkShuttingDown();

  grpc::Status Generate(grpc::ServerContext* context,
                        const colo::v1::GenerateRequest* request,
                        grpc::ServerWriter<colo::v1::GenerateResponse>* writer) override;
  grpc::Status OpenSession(grpc::ServerContext* context,
                           const colo::v1::OpenSessionRequest* request,
                           colo::v1::OpenSessionResponse* response) override;
  grpc::Status CloseSession(grpc::ServerContext* context,
                            const colo::v1::CloseSessionRequest* request,
                            colo::v1::CloseSessionResponse* response) override;
  grpc::Status Abort(grpc::ServerContext* context, const colo::v1::AbortRequest* request,
                     colo::v1::AbortResponse* response) override;
  grpc::Status PauseGeneration(grpc::ServerContext* context,
                               const colo::v1::PauseGenerationRequest* request,
                               colo::v1::PauseGenerationResponse* response) override;
  grpc::Status ContinueGeneration(grpc::ServerContext* context,
                                  const colo::v1::ContinueGenerationRequest* request,
                                  colo::v1::ContinueGenerationResponse* response) override;
  grpc::Status ReleaseTags(grpc::ServerContext* context,
                           const colo::v1::ReleaseTagsRequest* request,
                           colo::v1::ReleaseTagsResponse* response) override;
  grpc::Status ResumeTags(grpc::ServerContext* context,
                          const colo::v1::ResumeTagsRequest* request,
                          colo::v1::ResumeTagsResponse* response) override;
  grpc::Status InitWeightsUpdateGroup(
      grpc::ServerContext* context, const colo::v1::InitWeightsUpdateGroupRequest* request,
      colo::v1::InitWeightsUpdateGroupResponse* response) override;
  grpc::Status DestroyWeightsUpdateGroup(
      grpc::ServerContext* context, const colo::v1::DestroyWeightsUpdateGroupRequest* request,
      colo::v1::DestroyWeightsUpdateGroupResponse* response) override;
  grpc::Status UpdateWeightsFromDistributed(
      grpc::ServerContext* context,
      const colo::v1::UpdateWeightsFromDistributedRequest* request,
      colo::v1::UpdateWeightsResponse* response) override;
  grpc::Status UpdateWeightsFromTensor(grpc::ServerContext* context,
                                       grpc::ServerReader<colo::v1::WeightChunk>* reader,
                                       colo::v1::UpdateWeightsResponse* response) override;
  grpc::Status UpdateWeightsFromDisk(grpc::ServerContext* context,
                                     const colo::v1::UpdateWeightsFromDiskRequest* request,
                                     colo::v1::UpdateWeightsResponse* response) override;
  grpc::Status GetWeightChecksums(grpc::ServerContext* context,
                                  const colo::v1::GetWeightChecksumsRequest* request,
                                  colo::v1::GetWeightChecksumsResponse* response) override;
  grpc::Status ListWeightsUpdateGroups(
      grpc::ServerContext* context, const colo::v1::ListWeightsUpdateGroupsRequest* request,
      colo::v1::ListWeightsUpdateGroupsResponse* response) override;
  grpc::Status UpdateWeightsFromIpc(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<colo::v1::IpcUpdateReply, colo::v1::IpcUpdateRequest>* stream)
      override;
  grpc::Status FlushCache(grpc::ServerContext* context,
                          const colo::v1::FlushCacheRequest* request,
                          colo::v1::FlushCacheResponse* response) override;
  grpc::Status GetMemoryInfo(grpc::ServerContext* context,
                             const colo::v1::GetMemoryInfoRequest* request,
                             colo::v1::GetMemoryInfoResponse* response) override;
  grpc::Status GetServerInfo(grpc::ServerContext* context,
                             const colo::v1::GetServerInfoRequest* request,
                             colo::v1::GetServerInfoResponse* response) override;

 private:
  grpc::Status CheckAuth(grpc::ServerContext* context) const;
  // Re-evaluates "colo.generate" from the scheduler's snapshot.
  void UpdateHealth();

  EngineRuntime* const runtime_;
  const TokenChecker* const auth_;
  WeightUpdateService weights_;
  absl::Mutex health_mu_;
  grpc::HealthCheckServiceInterface* health_ ABSL_GUARDED_BY(health_mu_) = nullptr;
  bool shutting_down_ ABSL_GUARDED_BY(health_mu_) = false;
};

// Fills the proto MemoryInfo from a runtime snapshot and the scheduler's KV
// pool usage.
void FillMemoryInfo(const MemoryInfo& memory, const SchedulerSnapshot& snapshot,
                    colo::v1::MemoryInfo* out);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_SERVICE_H_
