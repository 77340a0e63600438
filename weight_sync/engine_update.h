// The engine's weight-update RPCs as functions over proto messages: the
// engine's gRPC handlers are one-line adapters over these (see the report /
// README in bench/weight_sync for the call pattern).
//
//   InitWeightsUpdateGroup       -> InitGroup(&registry, request, defaults)
//   DestroyWeightsUpdateGroup    -> DestroyGroup(&registry, request)
//   UpdateWeightsFromDistributed -> UpdateFromDistributed(&registry, request, env)
//   ListWeightsUpdateGroups      -> ListGroups(registry)
//   UpdateWeightsFromTensor      -> UpdateFromChunks(next_chunk, env, &commit)
//   UpdateWeightsFromDisk        -> UpdateFromDisk(request, env)
//   UpdateWeightsFromIpc         -> UpdateFromIpc(next, ack, env, ipc, &commit)
//   GetWeightChecksums           -> WeightChecksums(request, weights)
//
// Every update is all-or-nothing: the bytes go to shadow buffers from
// env.allocator and env.run_commit(commit) makes them live; on any error
// the live weights are unchanged. The engine's run_commit should run the
// commit on its scheduler thread between forward steps and, when it
// succeeds, set the new weight_version (and flush the prefix cache when the
// request asks) in the same step, so no batch sees a mix. The engine must
// only call these while paused or idle (its own lifecycle check).
#ifndef COLO_WEIGHT_SYNC_ENGINE_UPDATE_H_
#define COLO_WEIGHT_SYNC_ENGINE_UPDATE_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "colo/v1/engine.pb.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/model/model_weights.h"
#include "weight_sync/group_registry.h"
#include "weight_sync/ipc_update.h"
#include "weight_sync/receiver.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace weight_sync {

struct GroupDefaults {
  absl::Duration init_timeout = absl::Seconds(60);      // request 0
  absl::Duration transfer_timeout = absl::Seconds(120);  // request 0
  int local_rank = 0;   // rank = rank_offset + local_rank
  int cuda_device = 0;  // NCCL device of this engine
};

struct EngineUpdateEnv {
  engine::ModelWeights* weights = nullptr;         // required
  engine::CachingAllocator* allocator = nullptr;   // required (shadows, staging)
  // Reject NaN / infinite values (every path; --weight_update_check_finite).
  bool check_finite = true;
  engine::DeviceBackend* device_backend = nullptr;  // device transports only
  // Device transports (NCCL): the bucket slots the collective writes, in
  // device memory; `allocator` keeps the shadows (host memory).
  engine::CachingAllocator* device_staging = nullptr;
  CommitRunner run_commit;                          // null = commit inline
  // Builds each update's sink; null = a ModelWeightUpdateSink over `weights`
  // and `allocator`. (A tensor-parallel rank passes a sink that keeps its
  // shard of the full tensors, engine/tp/sharded_update_sink.h.)
  std::function<absl::StatusOr<std::unique_ptr<UpdateSink>>()> make_sink;
};

// INVALID_ARGUMENT for rank_offset < 1 (rank 0 is the trainer), a rank
// outside world_size, an empty group name, an empty master_address, a bad
// port, negative timeouts or an unknown rendezvous / torch_group.
absl::StatusOr<TransportOptions> TransportOptionsFromRequest(
    const v1::InitWeightsUpdateGroupRequest& request, const GroupDefaults& defaults);

// Forms the group (blocks until every rank joined or the init deadline).
// ALREADY_EXISTS for a name in use; see CreateTransport for the rest.
absl::StatusOr<v1::InitWeightsUpdateGroupResponse> InitGroup(
    GroupRegistry* registry, const v1::InitWeightsUpdateGroupRequest& request,
    const GroupDefaults& defaults);

// NOT_FOUND for an unknown group.
absl::Status DestroyGroup(GroupRegistry* registry,
                          const v1::DestroyWeightsUpdateGroupRequest& request);

// NOT_FOUND for an unknown group; FAILED_PRECONDITION while another update
// uses the group; otherwise ReceiveUpdate's / ReceiveTorchUpdate's codes
// (INVALID_ARGUMENT for rejected updates, ABORTED for interrupted ones).
// When a transfer fails (a peer died or timed out) the group is broken: the
// engine destroys it itself, says so in the message, and the same name can
// be initialized again at once. On a torch group a rejected update is
// drained (the trainer's broadcasts complete) and the group stays usable;
// `rejection` (e.g. the engine's own FAILED_PRECONDITION) makes the update
// rejected that way without touching the weights.
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDistributed(
    GroupRegistry* registry, const v1::UpdateWeightsFromDistributedRequest& request,
    const EngineUpdateEnv& env, const absl::Status& rejection = absl::OkStatus());

// Every group of the registry.
v1::ListWeightsUpdateGroupsResponse ListGroups(const GroupRegistry& registry);

// Reads chunks with `next` (false = end of stream) until the WeightCommit
// message, which is copied to `commit` (weight_version, flush_cache), then
// commits. INVALID_ARGUMENT for bad chunks, missing bytes (naming the
// tensor), a stream that ends without a commit or sends data after it.
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromChunks(
    const std::function<bool(v1::WeightChunk*)>& next, const EngineUpdateEnv& env,
    v1::WeightCommit* commit);

// Reads IpcUpdateRequests with `next` (false = end of stream): each bucket
// is copied into the update (IpcStreamUpdate) and acknowledged with `ack`
// (false = the client went away: CANCELLED); the WeightCommit message is
// copied to `commit` and the update commits. INVALID_ARGUMENT for bad
// buckets (see ipc_update.h), a stream that ends without a commit, or
// NaN/inf values; nothing is applied then.
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromIpc(
    const std::function<bool(v1::IpcUpdateRequest*)>& next,
    const std::function<bool(const v1::IpcBucketAck&)>& ack, const EngineUpdateEnv& env,
    const IpcUpdateOptions& ipc, v1::WeightCommit* commit);

// INVALID_ARGUMENT for an empty model_path (naming the field); NOT_FOUND for
// a missing directory/checkpoint; INVALID_ARGUMENT for missing tensors or
// wrong shapes/dtypes (all listed).
absl::StatusOr<v1::UpdateWeightsResponse> UpdateFromDisk(
    const v1::UpdateWeightsFromDiskRequest& request, const EngineUpdateEnv& env);

// Checksums of the live weights (weight_version is left to the engine).
// NOT_FOUND listing unknown names.
absl::StatusOr<v1::GetWeightChecksumsResponse> WeightChecksums(
    const v1::GetWeightChecksumsRequest& request,
    const engine::ModelWeights& weights);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_ENGINE_UPDATE_H_
