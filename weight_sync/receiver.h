// ReceiveUpdate: the engine side of UpdateWeightsFromDistributed (protocol in
// update_protocol.h).
//
// Validates the specs with the sink, begins the update, allocates two
// staging buffers from the caching allocator and receives the plan's
// transfers (PlanTransfers) double-buffered: a transfer thread broadcasts
// transfer k+1 while the calling thread stages transfer k into the sink. On
// host transports, a transfer that is a single piece of one tensor goes
// straight into the sink's staging area when the sink offers one
// (UpdateSink::StagingArea), skipping the staging copy; only runs of small
// pieces are staged through a buffer (then the staging buffers hold the
// largest such transfer). After the last transfer, every rank votes; only if all ranks
// (the sender and every engine rank) landed everything does the sink commit,
// via `run_commit` (the engine passes a function that runs the commit on its
// scheduler thread between forward steps and returns its status).
//
// Result: the timings, or
//   INVALID_ARGUMENT  this rank's validation failed (every offender listed);
//                     nothing was transferred, the group stays usable;
//   ABORTED           another rank rejected the update, a transfer failed or
//                     timed out (the cause is in the message; the group is
//                     then broken), or some rank failed to apply; the sink
//                     was aborted and the live weights are unchanged;
//   FAILED_PRECONDITION  the transport is already broken / closed.
// Blocking; call it from an RPC thread, not the scheduler thread.
#ifndef COLO_WEIGHT_SYNC_RECEIVER_H_
#define COLO_WEIGHT_SYNC_RECEIVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "weight_sync/tensor_spec.h"
#include "weight_sync/transport.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace weight_sync {

// Runs `commit` where the engine wants it (its scheduler thread) and returns
// its status. Must not drop the function.
using CommitRunner =
    std::function<absl::Status(const std::function<absl::Status()>& commit)>;

// Microseconds per stage and sizes, for UpdateWeightsResponse.
struct UpdateTimings {
  int64_t validate_us = 0;  // validate + plan + Begin + staging allocation
  int64_t transfer_us = 0;  // header, ready vote and every bucket (wall time)
  int64_t apply_us = 0;     // staging buckets into the sink (overlaps transfer)
  int64_t commit_us = 0;    // commit vote + run_commit
  int64_t bytes = 0;        // tensor bytes received
  int64_t tensors = 0;
};

struct ReceiverOptions {
  Transport* transport = nullptr;                  // required
  UpdateSink* sink = nullptr;                      // required
  engine::CachingAllocator* staging = nullptr;     // required
  // Required when transport->memory_space() is kDevice: buckets are copied
  // to host memory with it before staging.
  engine::DeviceBackend* device_backend = nullptr;
  // Null: commit inline on the calling thread.
  CommitRunner run_commit;
};

absl::StatusOr<UpdateTimings> ReceiveUpdate(const ReceiverOptions& options,
                                            const std::vector<TensorSpec>& specs,
                                            size_t bucket_bytes);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_RECEIVER_H_
