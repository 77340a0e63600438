// WeightUpdateService: the engine side of weight updates (collective groups
// of colo's or torch's rendezvous, UpdateWeightsFromDistributed / FromTensor
// / FromDisk / FromIpc, checksums, group listing), on top of weight_sync/
// and the model's staged update sink. Every update is validated before a
// byte moves (NaN/inf included, unless --weight_update_check_finite=false),
// staged, and committed on the scheduler thread between forward steps
// (Scheduler::CommitWeights), so generation never sees a mix.
//
// One update at a time: a second update while one is in flight is
// FAILED_PRECONDITION at once, naming the one in flight. An update the
// engine refuses on a torch group for other reasons (weights released,
// requests running, bad input) still receives and discards the trainer's
// broadcasts, so the trainer does not hang and the group stays usable.
//
// Tensor-parallel engines (engine/tp): group init/destroy, distributed, stream
// and disk updates run on every rank (each keeps its shard) and commit only
// when every rank staged its part (TpUpdate's vote); checksums combine every
// rank's pieces. IPC updates of tensor-parallel engines are refused
// (FAILED_PRECONDITION) for now.
//
// Thread-safe.
#ifndef COLO_ENGINE_SERVER_WEIGHT_UPDATE_SERVICE_H_
#define COLO_ENGINE_SERVER_WEIGHT_UPDATE_SERVICE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "colo/v1/engine.grpc.pb.h"
#include "engine/server/engine_runtime.h"
#include "engine/tp/tp_update.h"
#include "weight_sync/cuda_ipc.h"
#include "weight_sync/engine_update.h"
#include "weight_sync/group_registry.h"

namespace colo::engine {

class WeightUpdateService {
 public:
  explicit WeightUpdateService(EngineRuntime* runtime);

  absl::StatusOr<colo::v1::InitWeightsUpdateGroupResponse> InitGroup(
      const colo::v1::InitWeightsUpdateGroupRequest& request);
  absl::Status DestroyGroup(const colo::v1::DestroyWeightsUpdateGroupRequest& request);
  colo::v1::ListWeightsUpdateGroupsResponse ListGroups() const;
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromDistributed(
      const colo::v1::UpdateWeightsFromDistributedRequest& request);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromTensor(
      grpc::ServerReader<colo::v1::WeightChunk>* reader);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromDisk(
      const colo::v1::UpdateWeightsFromDiskRequest& request);
  // Acknowledges each bucket on `stream` as it is copied; the caller writes
  // the final reply.
  absl::StatusOr<colo::v1::UpdateWeightsResponse> UpdateFromIpc(
      grpc::ServerReaderWriter<colo::v1::IpcUpdateReply, colo::v1::IpcUpdateRequest>* stream);
  absl::StatusOr<colo::v1::GetWeightChecksumsResponse> Checksums(
      const colo::v1::GetWeightChecksumsRequest& request);
  // max_receive_message_bytes, ipc_domain, device_uuid.
  void FillServerInfo(colo::v1::GetServerInfoResponse* response) const;

 private:
  class InFlight;
  // The environment of one update; `version_and_flush` is read when the
  // commit runs (for streams, after the commit message arrived).
  weight_sync::EngineUpdateEnv Env(std::function<std::pair<std::string, bool>()> version_and_flush);
  // Tensor parallelism (engine/tp/tp_update.h): starts `command` on every
  // other rank (null without TP), and merges their outcome with rank 0's.
  absl::StatusOr<std::unique_ptr<TpUpdate>> StartTp(colo::internal::TpCommand command);
  absl::StatusOr<colo::v1::UpdateWeightsResponse> FinishTp(
      TpUpdate* tp, absl::StatusOr<colo::v1::UpdateWeightsResponse> local);
  // Claims the single update slot for `rpc`; FAILED_PRECONDITION when taken.
  absl::Status Claim(const char* rpc) ABSL_LOCKS_EXCLUDED(mu_);
  void Unclaim() ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<weight_sync::CudaIpcReader*> CudaReader() ABSL_LOCKS_EXCLUDED(mu_);

  EngineRuntime* const runtime_;
  weight_sync::GroupDefaults defaults_;
  weight_sync::GroupRegistry registry_;  // thread-safe
  const std::vector<std::string> shm_dirs_;
  const std::string ipc_domain_;

  mutable absl::Mutex mu_;
  std::string in_flight_ ABSL_GUARDED_BY(mu_);  // the update running, "" when none
  absl::Time in_flight_since_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<weight_sync::CudaIpcReader> cuda_reader_ ABSL_GUARDED_BY(mu_);
  absl::Status cuda_reader_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_WEIGHT_UPDATE_SERVICE_H_
