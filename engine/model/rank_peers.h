// RankPeers: the other ranks of a tensor-parallel engine (engine/tp), as the
// scheduler sees them. Rank 0's scheduler owns the requests and the KV
// bookkeeping; the other ranks hold their shard of the weights and their KV
// heads in their own tagged pools, and follow rank 0's memory transitions:
// the scheduler calls these on its thread, between forward steps, next to
// its own pool's Release/Resume (ranks release after rank 0 stopped
// stepping, and resume before it steps again).
//
// Errors name the rank. A rank that does not answer within the engine's
// deadline has failed: the engine turns FAILED (see TpModelRunner).
#ifndef COLO_ENGINE_MODEL_RANK_PEERS_H_
#define COLO_ENGINE_MODEL_RANK_PEERS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/memory_tag.h"
#include "engine/memory/tagged_pool.h"

namespace colo {
namespace engine {

// One rank's side of a Release or Resume.
struct RankTransition {
  int rank = 0;
  std::vector<TagReleaseReport> released;  // Release
  std::vector<TagResumeReport> resumed;    // Resume
  DeviceMemoryInfo before;
  DeviceMemoryInfo after;
};

// One rank's caching allocator around ContinueGeneration (or now, for
// PauseGeneration: before == after).
struct RankCacheReport {
  int rank = 0;
  uint64_t reserved_bytes_before = 0;
  uint64_t reserved_bytes_after = 0;
  uint64_t process_resident_bytes = 0;
};

class RankPeers {
 public:
  virtual ~RankPeers() = default;

  // Every other rank releases / resumes `tags` (all tags when empty).
  virtual absl::StatusOr<std::vector<RankTransition>> Release(
      const std::vector<MemoryTag>& tags) = 0;
  virtual absl::StatusOr<std::vector<RankTransition>> Resume(
      const std::vector<MemoryTag>& tags) = 0;
  // ContinueGeneration: each rank empties its caching allocator (when
  // `empty_cache`) and reports its reserved bytes.
  virtual absl::StatusOr<std::vector<RankCacheReport>> Continue(bool empty_cache) = 0;
  // PauseGeneration: each rank answers (a dead rank fails the pause) with
  // its allocator's reserved bytes and its RSS.
  virtual absl::StatusOr<std::vector<RankCacheReport>> Pause() = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_RANK_PEERS_H_
