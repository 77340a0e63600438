// SendUpdate: the rank-0 (trainer) side of the update protocol
// (update_protocol.h): header, ready vote, buckets, commit vote.
//
// Sends the plan's transfers (PlanTransfers, bucket_plan.h). Host transports
// (Gloo) broadcast a transfer that is one piece of one tensor straight from
// the tensor's memory (no copy) and pack runs of small pieces into two host
// buffers, packing transfer k+1 while transfer k is broadcast. Device
// transports (NCCL) send whole buckets and need `device_backend` and
// `staging`: buckets are packed on the host and copied into device staging
// buffers.
//
// Returns the report, or ABORTED when an engine rejected the update
// (nothing was sent), a collective failed (the group is then broken) or an
// engine failed to apply; INVALID_ARGUMENT for a bad plan (duplicate names,
// bucket too small). Blocking.
#ifndef COLO_WEIGHT_SYNC_BROADCAST_SENDER_H_
#define COLO_WEIGHT_SYNC_BROADCAST_SENDER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "weight_sync/tensor_spec.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {

// A tensor to send: its spec and spec.Bytes() bytes of host memory (not
// owned; must stay valid during SendUpdate).
struct SendTensor {
  TensorSpec spec;
  const void* data = nullptr;
};

struct SendOptions {
  Transport* transport = nullptr;  // rank 0 of the group; required
  size_t bucket_bytes = 0;         // 0 = kDefaultBucketBytes
  // Device transports only.
  engine::DeviceBackend* device_backend = nullptr;
  engine::CachingAllocator* staging = nullptr;
  // TEST ONLY (fault injection): called on the sending thread after each
  // bucket's broadcast returned OK, with the number of buckets sent so far.
  // Tests kill or stop the sender here to interrupt an update at a known
  // point. Null (the default) in production.
  std::function<void(int64_t buckets_sent)> after_bucket_for_testing;
};

struct SendReport {
  int64_t bytes = 0;
  int64_t buckets = 0;
  int64_t ready_us = 0;     // header + ready vote (waits for the engines)
  int64_t transfer_us = 0;  // all buckets
  int64_t commit_us = 0;    // commit vote
};

absl::StatusOr<SendReport> SendUpdate(const SendOptions& options,
                                      const std::vector<SendTensor>& tensors);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_BROADCAST_SENDER_H_
