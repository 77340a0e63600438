// WeightUpdateService: the engine side of weight updates (collective groups,
// UpdateWeightsFromDistributed / FromTensor / FromDisk, checksums), on top of
// weight_sync/ and the model's staged update sink. Every update is validated
// before a byte moves, staged, and committed on the scheduler thread between
// forward steps (Scheduler::CommitWeights), so generation never sees a mix.
//
// Thread-safe.
#ifndef COLO_ENGINE_SERVER_WEIGHT_UPDATE_SERVICE_H_
#define COLO_ENGINE_SERVER_WEIGHT_UPDATE_SERVICE_H_

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/server/engine_runtime.h"
#include "engine/tp/tp_update.h"
#include "weight_sync/engine_update.h"
#include "weight_sync/group_registry.h"

namespace colo::engine {

class WeightUpdateService {
 public:
  explicit WeightUpdateService(EngineRuntime* runtime);

  absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> InitGroup(
      const colo::v1::InitWeightsUpdateGroupRequest& request);
  absl::Status DestroyGroup(const colo::v1::DestroyWeightsUpdateGroupRequest& request);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromDistributed(
      const colo::v1::UpdateWeightsFromDistributedRequest& request);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromTensor(
      grpc::ServerReader<colo::v1::WeightChunk>* reader);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromDisk(
      const colo::v1::UpdateWeightsFromDiskRequest& request);
  absl::StatusOr<colo::v1::GetWeightChecksumsResponse> Checksums(
      const colo::v1::GetWeightChecksumsRequest& request);

 private:
  // The environment of one update; `version_and_flush` is read when the
  // commit runs (for streams, after the commit message arrived).
  weight_sync::EngineUpdateEnv Env(std::function<std::pair<std::string, bool>()> version_and_flush);
  // Tensor parallelism (engine/tp/tp_update.h): starts `command` on every
  // other rank (null without TP), and merges their outcome with rank 0's.
  absl::StatusOr<std::unique_ptr<TpUpdate>> StartTp(colo::internal::TpCommand command);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> FinishTp(
      TpUpdate* tp, absl::StatusOr<colo::v1::UpdateWeightsResponse> local);

  EngineRuntime* const runtime_;
  weight_sync::GroupDefaults defaults_;
  weight_sync::GroupRegistry registry_;  // thread-safe
};

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_WEIGHT_UPDATE_SERVICE_H_
