// BucketPlan: how an ordered list of tensors is flattened into fixed-size
// broadcast buckets. The sender and every receiver compute the plan from the
// same (specs, bucket_bytes) and get the same plan (MakeBucketPlan is a pure
// function); PlanHash lets ranks check they agree before any byte moves.
//
// Layout rules:
//   - Tensors are laid out in the given order. A tensor starts at the next
//     offset in the current bucket that is a multiple of its element size
//     (dtype-aligned); the padding bytes are unspecified.
//   - A tensor that does not fit in the rest of the current bucket is split
//     at an element boundary: the part that fits stays, the rest continues
//     at offset 0 of the next bucket (and so on, so a tensor larger than
//     bucket_bytes spans several buckets). Hence every bucket except the last
//     is filled up to less than one element of bucket_bytes.
//   - Zero-element tensors get no piece.
//   - Bucket byte sizes are exact (the last one is not padded).
#ifndef COLO_WEIGHT_SYNC_BUCKET_PLAN_H_
#define COLO_WEIGHT_SYNC_BUCKET_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "weight_sync/tensor_spec.h"

namespace colo {
namespace weight_sync {

// A contiguous byte range of one tensor placed inside one bucket.
struct BucketPiece {
  int tensor_index = 0;       // index into the plan's specs
  size_t tensor_offset = 0;   // byte offset inside the tensor
  size_t bucket_offset = 0;   // byte offset inside the bucket
  size_t bytes = 0;           // a multiple of the element size
};

struct Bucket {
  size_t bytes = 0;  // bytes broadcast for this bucket (<= bucket_bytes)
  std::vector<BucketPiece> pieces;
};

struct BucketPlan {
  std::vector<TensorSpec> specs;
  size_t bucket_bytes = 0;
  std::vector<Bucket> buckets;
  size_t tensor_bytes = 0;  // sum of the tensors' bytes (no padding)
  uint64_t hash = 0;        // PlanHash(specs, bucket_bytes)
};

// One broadcast of an update: `bytes` bytes at `bucket_offset` of bucket
// `bucket`, carrying that bucket's pieces [first_piece, first_piece +
// num_pieces) (and the padding between them).
struct Transfer {
  size_t bucket = 0;
  size_t bucket_offset = 0;
  size_t bytes = 0;
  size_t first_piece = 0;
  size_t num_pieces = 0;
};

// Pieces of at least this many bytes travel alone on host transports.
inline constexpr size_t kOwnTransferBytes = size_t{256} << 10;

// The broadcasts that carry `plan`, in order. Every rank derives them from
// the same plan and issues exactly these collectives.
//   whole_buckets (device transports): one transfer per bucket.
//   otherwise (host transports): a piece of at least kOwnTransferBytes is a
//     transfer of its own, and each run of consecutive smaller pieces of a
//     bucket shares one. A single-piece transfer is the bytes of one tensor
//     range, so it is sent from the tensor and received into the sink's
//     staging area without a copy on either side; only runs of small
//     pieces are packed.
std::vector<Transfer> PlanTransfers(const BucketPlan& plan, bool whole_buckets);

// Minimum bucket size accepted by MakeBucketPlan.
inline constexpr size_t kMinBucketBytes = 64;

// INVALID_ARGUMENT for bucket_bytes < kMinBucketBytes, a kOther dtype, a
// negative dimension or a duplicate name (all offenders listed).
absl::StatusOr<BucketPlan> MakeBucketPlan(const std::vector<TensorSpec>& specs,
                                          size_t bucket_bytes);

// FNV-1a over bucket_bytes and every spec's name, dtype and shape.
uint64_t PlanHash(const std::vector<TensorSpec>& specs, size_t bucket_bytes);

}  // namespace weight_sync
}  // namespace colo

#endif  // COLO_WEIGHT_SYNC_BUCKET_PLAN_H_
