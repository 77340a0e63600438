// ReceiveTorchUpdate: the engine side of UpdateWeightsFromDistributed on a
// torch group (rendezvous "torch", torch_transport.h). The trainer runs
// plain torch: one dist.broadcast(tensor, src=0) per name of the request,
// in order. Each tensor lands straight in the sink's staging area (its own
// dtype, no bounce buffer); the sink checks completeness and finiteness
// after the last one and the update commits only then (via `run_commit`).
//
// The trainer's broadcasts always complete: when this rank rejects the
// update before or while receiving (a bad name/shape/dtype, no staging
// memory, `rejection` from the caller, NaN), it keeps receiving and
// discards the rest, so the group stays usable for the next update.
//
// Result: the timings, or
//   INVALID_ARGUMENT     the update was rejected (every offender listed, or
//                        the first non-finite value); the group is usable;
//   the caller's `rejection` (e.g. FAILED_PRECONDITION), group usable;
//   ABORTED              a broadcast failed (peer died, timeout, a size other
//                        than the request declared): the transport is broken
//                        and the caller destroys the group;
// The sink is aborted on every error; live weights are untouched.
#ifndef COLO_WEIGHT_SYNC_TORCH_RECEIVER_H_
#define COLO_WEIGHT_SYNC_TORCH_RECEIVER_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "weight_sync/receiver.h"
#include "weight_sync/tensor_spec.h"
#include "weight_sync/transport.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace weight_sync {

struct TorchReceiveOptions {
  Transport* transport = nullptr;  // required, rendezvous "torch"
  UpdateSink* sink = nullptr;      // required unless `rejection` is set
  CommitRunner run_commit;         // null = commit inline
  // When not OK, the update is drained and this is returned.
  absl::Status rejection;
  // Device transports (a torch NCCL group): each tensor lands in a device
  // buffer from `device_staging`, then is copied to the sink's host staging
  // area with `device_backend`. Both required then.
  engine::CachingAllocator* device_staging = nullptr;
  engine::DeviceBackend* device_backend = nullptr;
};

absl::StatusOr<UpdateTimings> ReceiveTorchUpdate(const TorchReceiveOptions& options,
                                                 const std::vector<TensorSpec>& specs);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_TORCH_RECEIVER_H_
