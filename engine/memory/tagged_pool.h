// TaggedPool: tagged device allocations with stable addresses that can give
// their physical memory back and take it again (DESIGN.md "Memory model").
//
// Every allocation belongs to one MemoryTag. Allocate() reserves a VA range
// (size rounded up to the backend granularity) and maps physical memory into
// it in chunks of Options::physical_chunk_bytes. The address never changes
// until Free().
//
//   Release(tags): synchronize the device; for each tag whose backup policy is
//     kHostCopy, copy every allocation into that tag's host backup stream:
//     allocations are packed back to back across pooled host buffers of
//     host_chunk_bytes each (so a tag wastes at most one partly used buffer,
//     however many small allocations it has; the buffers are kept and reused
//     on the next cycle); then unmap and free all
//     physical memory of the tags. VA ranges stay reserved. A tag already
//     released is reported as no_op. If a backup copy fails nothing is
//     released (all-or-nothing). If the backend fails to unmap or free a
//     chunk (driver error), the tags are still marked released and Release
//     returns INTERNAL naming the allocation: memory may be stranded, which
//     the caller should treat as a failed transition.
//   Resume(tags): in the order cuda_graph, weights, kv_cache, map fresh
//     physical memory at the same addresses and restore host copies. On any
//     failure, everything this call mapped is unmapped again, every requested
//     tag stays released (its backups kept), and the call returns
//     RESOURCE_EXHAUSTED (backend out of memory) or the backend's error.
//     A tag already resident is reported as no_op.
//   Content of a kDiscard tag after Resume is undefined.
//
// State per tag:  kResident --Release--> kReleased --Resume--> kResident.
//   Allocate on a released tag: FAILED_PRECONDITION.
//   Free of an allocation of a released tag frees its reservation (and backup).
//
// Thread-safe. Release/Resume/Allocate/Free serialize on one mutex; the pool
// is an ordinary object passed explicitly (no singleton). The backend must
// outlive the pool. Destroying the pool synchronizes the device and frees
// everything it still holds.
#ifndef COLO_ENGINE_MEMORY_TAGGED_POOL_H_
#define COLO_ENGINE_MEMORY_TAGGED_POOL_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/device/device_backend.h"
#include "engine/memory/memory_tag.h"

namespace colo {
namespace engine {

enum class BackupPolicy {
  kDiscard,   // content lost on Release (the trainer re-sends weights)
  kHostCopy,  // copied to host on Release, restored bit-exact on Resume
};

enum class TagState { kResident, kReleased };

absl::string_view BackupPolicyName(BackupPolicy policy);
absl::string_view TagStateName(TagState state);

struct TagReleaseReport {
  MemoryTag tag = MemoryTag::kWeights;
  uint64_t bytes_freed = 0;   // physical bytes unmapped and released
  uint64_t backup_bytes = 0;  // bytes copied to host
  bool no_op = false;         // the tag was already released
  absl::Duration duration;
};

struct TagResumeReport {
  MemoryTag tag = MemoryTag::kWeights;
  uint64_t bytes_mapped = 0;    // physical bytes mapped again
  uint64_t bytes_restored = 0;  // bytes copied back from host
  bool no_op = false;           // the tag was already resident
  absl::Duration duration;
};

struct ReleaseReport {
  std::vector<TagReleaseReport> tags;  // one per requested tag
  absl::Duration duration;
};

struct ResumeReport {
  std::vector<TagResumeReport> tags;  // one per requested tag
  absl::Duration duration;
};

struct TagInfo {
  MemoryTag tag = MemoryTag::kWeights;
  TagState state = TagState::kResident;
  BackupPolicy backup = BackupPolicy::kDiscard;
  uint64_t reserved_bytes = 0;  // VA reserved by live allocations
  uint64_t resident_bytes = 0;  // physical bytes mapped (as the pool believes)
  uint64_t backup_bytes = 0;    // bytes held in host backups
  int64_t allocation_count = 0;
};

struct PoolInfo {
  std::vector<TagInfo> tags;  // every tag, in AllMemoryTags() order
  uint64_t granularity = 0;
  uint64_t host_pool_bytes = 0;  // pooled host staging buffers (in use + idle)
};

class TaggedPool {
 public:
  struct Options {
    // Not owned; must outlive the pool. Required.
    DeviceBackend* backend = nullptr;
    // Per-tag backup policy, indexed by static_cast<int>(MemoryTag).
    // Default: everything kDiscard (weights are re-sent by the trainer).
    std::array<BackupPolicy, kNumMemoryTags> backup = {
        BackupPolicy::kDiscard, BackupPolicy::kDiscard, BackupPolicy::kDiscard};
    // Physical memory is created and mapped in chunks of at most this many
    // bytes (rounded up to granularity). 0 = 64 MiB.
    size_t physical_chunk_bytes = 0;
    // Size of each pooled host backup buffer (rounded up to granularity); each
    // copy moves at most this many bytes. 0 = 64 MiB.
    size_t host_chunk_bytes = 0;
    // Allocations larger than this are INVALID_ARGUMENT. 0 = 1 TiB.
    size_t max_allocation_bytes = 0;
    // TEST ONLY: Release of this tag reports the bytes freed and marks the
    // tag released but keeps its physical memory mapped (a lying engine, for
    // tests of the controller's verification). Never set in production.
    std::optional<MemoryTag> debug_skip_release_tag;
  };

  // INVALID_ARGUMENT without a backend.
  static absl::StatusOr<std::unique_ptr<TaggedPool>> Create(
      const Options& options);
  ~TaggedPool();

  TaggedPool(const TaggedPool&) = delete;
  TaggedPool& operator=(const TaggedPool&) = delete;

  // Allocates `bytes` (rounded up to granularity) in `tag`, mapped and
  // accessible, at an address that stays fixed until Free. `name` is for
  // diagnostics. INVALID_ARGUMENT for 0 or > max_allocation_bytes;
  // FAILED_PRECONDITION when `tag` is released; RESOURCE_EXHAUSTED when the
  // device is out of memory (nothing is left allocated).
  absl::StatusOr<void*> Allocate(MemoryTag tag, size_t bytes,
                                 absl::string_view name)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Frees an allocation returned by Allocate, after synchronizing the device
  // (unmapping does not wait for device work). NOT_FOUND for other pointers;
  // the backend's error when the synchronization fails (the allocation then
  // stays).
  absl::Status Free(void* ptr) ABSL_LOCKS_EXCLUDED(mu_);

  // Size (rounded) of a live allocation; NOT_FOUND otherwise.
  absl::StatusOr<size_t> AllocationSize(void* ptr) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // See the file comment. Empty `tags` = all tags.
  absl::StatusOr<ReleaseReport> Release(const std::vector<MemoryTag>& tags)
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<ResumeReport> Resume(const std::vector<MemoryTag>& tags)
      ABSL_LOCKS_EXCLUDED(mu_);

  bool IsReleased(MemoryTag tag) const ABSL_LOCKS_EXCLUDED(mu_);
  PoolInfo Info() const ABSL_LOCKS_EXCLUDED(mu_);

  // Frees idle pooled host backup buffers; returns the bytes freed.
  uint64_t TrimHostPool() ABSL_LOCKS_EXCLUDED(mu_);

  DeviceBackend* backend() const { return options_.backend; }

 private:
  struct Allocation;
  explicit TaggedPool(const Options& options);

  // Maps every chunk of `a`; on failure unmaps what it mapped.
  absl::Status MapAllocationLocked(Allocation& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Unmaps and releases every chunk (continues past errors); returns the
  // first error.
  absl::Status UnmapAllocationLocked(Allocation& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A tag's host copy: allocations packed back to back over `buffers`.
  struct BackupStream {
    std::vector<void*> buffers;  // host_chunk_bytes_ each
    uint64_t used = 0;           // bytes appended so far
  };
  // Appends `a`'s bytes to its tag's stream and records the offset.
  absl::Status BackupAllocationLocked(Allocation& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status RestoreAllocationLocked(Allocation& a)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns the tag's buffers to the idle pool and forgets every offset.
  void DropTagBackupLocked(MemoryTag tag) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<void*> TakeHostBufferLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const Options options_;
  size_t physical_chunk_bytes_ = 0;
  size_t host_chunk_bytes_ = 0;
  size_t max_allocation_bytes_ = 0;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<void*, std::unique_ptr<Allocation>> allocations_
      ABSL_GUARDED_BY(mu_);
  std::array<TagState, kNumMemoryTags> state_ ABSL_GUARDED_BY(mu_);
  std::array<BackupStream, kNumMemoryTags> backups_ ABSL_GUARDED_BY(mu_);
  // Idle host staging buffers of host_chunk_bytes_ each.
  std::vector<void*> idle_host_buffers_ ABSL_GUARDED_BY(mu_);
  uint64_t host_buffers_total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MEMORY_TAGGED_POOL_H_
