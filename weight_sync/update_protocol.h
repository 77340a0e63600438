// The wire protocol of one UpdateWeightsFromDistributed over a Transport.
// Every rank (the sender = rank 0, every engine rank) runs the same steps:
//
//   1. Broadcast(header, root 0): UpdateHeader {magic, plan hash, buckets,
//      bytes} computed by the sender from (specs, bucket_bytes).
//   2. Ready vote: AllReduceMin(ready). An engine rank votes 0 when its
//      validation failed (wrong name/shape/dtype), its plan hash differs from
//      the header's, or staging memory could not be allocated. If the minimum
//      is 0 every rank stops here: no weight byte was sent. The rank that
//      rejected returns INVALID_ARGUMENT (or its own error), the others
//      ABORTED, and the group stays usable.
//   3. Broadcast(transfer k, root 0) for every transfer of
//      PlanTransfers(plan, whole_buckets = device transport), in order: one
//      per bucket on device transports; on host transports each large piece
//      alone (no copy on either side) and each run of small pieces packed.
//   4. Commit vote: AllReduceMin(applied). An engine rank votes 1 only when
//      every bucket landed and was staged. If the minimum is 1 every engine
//      commits; otherwise every engine aborts (ABORTED).
// A collective that fails (peer died, transfer timeout) breaks the group:
// engines abort the update (ABORTED with the cause), the caller destroys
// the group and may form a new one.
#ifndef COLO_WEIGHT_SYNC_UPDATE_PROTOCOL_H_
#define COLO_WEIGHT_SYNC_UPDATE_PROTOCOL_H_

#include <cstdint>

namespace colo {
namespace weight_sync {

// "COLOWT02": buckets go as PlanTransfers (v01 sent one broadcast per bucket).
inline constexpr uint64_t kUpdateMagic = 0x434f4c4f57543032ull;

struct UpdateHeader {
  uint64_t magic = kUpdateMagic;
  uint64_t plan_hash = 0;
  uint64_t num_buckets = 0;
  uint64_t tensor_bytes = 0;
};
static_assert(sizeof(UpdateHeader) == 32, "UpdateHeader is sent as raw bytes");

// The bucket size used when a request says 0.
inline constexpr uint64_t kDefaultBucketBytes = 64ull << 20;

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_UPDATE_PROTOCOL_H_
