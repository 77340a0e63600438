// GetWeightChecksums on a tensor-parallel engine: the CRC32C of every FULL
// tensor (float32, row-major: what an unsharded engine reports), without
// gathering the weights. Each rank checksums the contiguous pieces of each
// full tensor it holds (ShardPlan::HeldPieces: one piece for a row shard,
// one per row for a column shard, the whole tensor when replicated); rank 0
// orders every rank's pieces by offset, checks that they tile the tensor
// (replicas, e.g. norms or KV heads held by several ranks, must agree) and
// combines their CRCs (Crc32cShift).
#ifndef COLO_ENGINE_TP_TP_CHECKSUMS_H_
#define COLO_ENGINE_TP_TP_CHECKSUMS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "colo/internal/tp_control.pb.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_checksums.h"
#include "engine/tp/shard_plan.h"

namespace colo {
namespace engine {

// This rank's pieces of the named tensors (empty: every tensor, in
// ModelWeights::List() order). NOT_FOUND listing unknown names.
absl::StatusOr<colo::internal::TpChecksumsReply> ShardChecksumPieces(
    const ShardPlan& plan, const ModelWeights& local, const std::vector<std::string>& names);

// Full-tensor checksums from every rank's pieces (ranks[0] gives the order).
// INTERNAL naming the tensor when the pieces leave a gap, overlap
// differently, or replicas of a piece disagree (naming both ranks).
absl::StatusOr<std::vector<WeightChecksumEntry>> CombineChecksumPieces(
    const std::vector<colo::internal::TpChecksumsReply>& ranks);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_CHECKSUMS_H_
