// CachingAllocator: a PyTorch-style caching allocator for transient device
// buffers (activations, weight-update staging, post-update processing).
//
// Requests are rounded up to 512 bytes and served from one of two pools:
//   small (<= 1 MiB): 2 MiB segments;
//   large (>  1 MiB): segments of max(request rounded to granularity,
//                     large_segment_bytes) for requests < 10 MiB, else the
//                     request rounded to granularity.
// A segment is one backend reservation + physical chunk + mapping. Free
// blocks are kept in per-pool best-fit bins; a block larger than needed is
// split (small pool: remainder >= 512 B; large: remainder > 1 MiB) and freed
// blocks coalesce with free neighbours in the same segment. Freed memory stays
// cached (reserved) until EmptyCache(), which returns every fully free segment
// to the backend. When the backend is out of memory, Allocate empties the
// cache once and retries.
//
// Thread-safe (one mutex). The backend must outlive the allocator; destroying
// the allocator synchronizes the device and returns all segments (live
// blocks become dangling).
#ifndef COLO_ENGINE_MEMORY_CACHING_ALLOCATOR_H_
#define COLO_ENGINE_MEMORY_CACHING_ALLOCATOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/device/device_backend.h"

namespace colo {
namespace engine {

struct CachingAllocatorStats {
  uint64_t allocated_bytes = 0;       // in live blocks (rounded sizes)
  uint64_t reserved_bytes = 0;        // in segments held from the backend
  uint64_t peak_allocated_bytes = 0;  // since creation or ResetPeakStats
  uint64_t peak_reserved_bytes = 0;
  int64_t segments = 0;
  uint64_t largest_free_block_bytes = 0;
  // 1 - largest_free_block / (reserved - allocated); 0 when nothing is free.
  double fragmentation = 0.0;
  int64_t alloc_count = 0;  // successful Allocate calls
  int64_t free_count = 0;   // successful Free calls
  int64_t segment_allocs = 0;  // segments obtained from the backend
  int64_t segment_frees = 0;   // segments returned to the backend
};

class CachingAllocator {
 public:
  struct Options {
    // Not owned; must outlive the allocator. Required.
    DeviceBackend* backend = nullptr;
    // Allocations larger than this are INVALID_ARGUMENT. 0 = 1 TiB.
    size_t max_allocation_bytes = 0;
    // Minimum large-pool segment for requests < 10 MiB. 0 = 20 MiB.
    size_t large_segment_bytes = 0;
  };

  static absl::StatusOr<std::unique_ptr<CachingAllocator>> Create(
      const Options& options);
  ~CachingAllocator();

  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns a device buffer of at least `bytes` bytes (512-byte aligned).
  // INVALID_ARGUMENT for 0 or > max_allocation_bytes; RESOURCE_EXHAUSTED when
  // the backend is out of memory even after emptying the cache.
  absl::StatusOr<void*> Allocate(size_t bytes) ABSL_LOCKS_EXCLUDED(mu_);
  // NOT_FOUND for pointers this allocator did not return (or already freed).
  absl::Status Free(void* ptr) ABSL_LOCKS_EXCLUDED(mu_);

  // Returns every fully free segment to the backend; returns the bytes given
  // back. The device is synchronized first (unmapping does not wait for
  // device work that may still use a freed block); when that fails nothing
  // is returned (0). Errors from the backend's unmap/release are logged; the
  // segment is then dropped.
  uint64_t EmptyCache() ABSL_LOCKS_EXCLUDED(mu_);

  // The backend the segments come from (e.g. for DeviceBackend::ExchangePages
  // on blocks of this allocator).
  DeviceBackend* backend() const { return backend_; }

  CachingAllocatorStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);
  void ResetPeakStats() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Segment;
  struct Block;
  struct BlockLess {
    bool operator()(const Block* a, const Block* b) const;
  };
  using FreeBins = std::set<Block*, BlockLess>;

  explicit CachingAllocator(const Options& options);

  absl::StatusOr<Block*> NewSegmentLocked(size_t segment_bytes, bool small)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t EmptyCacheLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  FreeBins& BinsFor(bool small) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return small ? small_free_ : large_free_;
  }

  // Constant after construction.
  DeviceBackend* const backend_;
  const size_t max_allocation_bytes_;
  const size_t large_segment_bytes_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Segment>> segments_ ABSL_GUARDED_BY(mu_);
  FreeBins small_free_ ABSL_GUARDED_BY(mu_);
  FreeBins large_free_ ABSL_GUARDED_BY(mu_);
  // Live (allocated) blocks by address.
  absl::flat_hash_map<void*, Block*> live_ ABSL_GUARDED_BY(mu_);
  CachingAllocatorStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MEMORY_CACHING_ALLOCATOR_H_
