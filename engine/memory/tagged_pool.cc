#include "engine/memory/tagged_pool.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace {

constexpr size_t kDefaultChunkBytes = size_t{64} << 20;
constexpr size_t kDefaultMaxAllocationBytes = size_t{1} << 40;

int Index(MemoryTag tag) { return static_cast<int>(tag); }

bool ValidTag(MemoryTag tag) {
  const int i = Index(tag);
  return i >= 0 && i < kNumMemoryTags;
}

// Empty = all; otherwise deduplicated, in AllMemoryTags() order.
absl::StatusOr<std::vector<MemoryTag>> Normalize(
    const std::vector<MemoryTag>& tags) {
  if (tags.empty()) return AllMemoryTags();
  bool seen[kNumMemoryTags] = {};
  for (MemoryTag tag : tags) {
    if (!ValidTag(tag)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid memory tag value ", Index(tag),
          "; valid tags: weights, kv_cache, cuda_graph"));
    }
    seen[Index(tag)] = true;
  }
  std::vector<MemoryTag> out;
  for (MemoryTag tag : AllMemoryTags()) {
    if (seen[Index(tag)]) out.push_back(tag);
  }
  return out;
}

}  // namespace

absl::string_view BackupPolicyName(BackupPolicy policy) {
  switch (policy) {
    case BackupPolicy::kDiscard:
      return "discard";
    case BackupPolicy::kHostCopy:
      return "host_copy";
  }
  return "unknown";
}

absl::string_view TagStateName(TagState state) {
  switch (state) {
    case TagState::kResident:
      return "resident";
    case TagState::kReleased:
      return "released";
  }
  return "unknown";
}

struct TaggedPool::Allocation {
  MemoryTag tag = MemoryTag::kWeights;
  std::string name;
  size_t bytes = 0;  // rounded to granularity
  Reservation va;
  // Physical chunks and their mappings; both empty while released.
  std::vector<PhysicalAllocation> chunks;
  std::vector<Mapping> mappings;
  // Host copy while released (kHostCopy): `bytes` at `backup_offset` of the
  // tag's BackupStream.
  bool has_backup = false;
  uint64_t backup_offset = 0;

  bool mapped() const { return !mappings.empty(); }
  char* base() const { return static_cast<char*>(va.base()); }
};

absl::StatusOr<std::unique_ptr<TaggedPool>> TaggedPool::Create(
    const Options& options) {
  if (options.backend == nullptr) {
    return absl::InvalidArgumentError("TaggedPool::Options::backend is null");
  }
  return std::unique_ptr<TaggedPool>(new TaggedPool(options));
}

TaggedPool::TaggedPool(const Options& options) : options_(options) {
  DeviceBackend* b = options_.backend;
  physical_chunk_bytes_ = b->RoundUp(options_.physical_chunk_bytes == 0
                                         ? kDefaultChunkBytes
                                         : options_.physical_chunk_bytes);
  host_chunk_bytes_ = b->RoundUp(options_.host_chunk_bytes == 0
                                     ? kDefaultChunkBytes
                                     : options_.host_chunk_bytes);
  max_allocation_bytes_ = options_.max_allocation_bytes == 0
                              ? kDefaultMaxAllocationBytes
                              : options_.max_allocation_bytes;
  state_.fill(TagState::kResident);
}

TaggedPool::~TaggedPool() {
  absl::MutexLock lock(&mu_);
  if (!allocations_.empty()) {
    // Unmapping does not wait for device work still using the memory.
    if (absl::Status s = options_.backend->Synchronize(); !s.ok()) {
      COLO_LOG(ERROR) << "TaggedPool: synchronizing before freeing " << allocations_.size()
                      << " allocation(s) failed (freeing them anyway): " << s;
    }
  }
  for (auto& [ptr, a] : allocations_) {
    UnmapAllocationLocked(*a).IgnoreError();  // errors are logged
  }
  allocations_.clear();  // frees the reservations
  for (MemoryTag tag : AllMemoryTags()) DropTagBackupLocked(tag);
  for (void* buffer : idle_host_buffers_) {
    absl::Status s = options_.backend->FreeHost(buffer, host_chunk_bytes_);
    if (!s.ok()) COLO_LOG(ERROR) << "freeing host backup buffer: " << s;
  }
}

absl::StatusOr<void*> TaggedPool::Allocate(MemoryTag tag, size_t bytes,
                                           absl::string_view name) {
  if (!ValidTag(tag)) {
    return absl::InvalidArgumentError(
        absl::StrCat("Allocate('", name, "'): invalid memory tag value ",
                     Index(tag)));
  }
  if (bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Allocate('", name, "', tag ", MemoryTagName(tag),
                     "): size must be positive, got 0 bytes"));
  }
  if (bytes > max_allocation_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Allocate('", name, "', tag ", MemoryTagName(tag), "): ", bytes,
        " bytes exceeds the limit of ", max_allocation_bytes_, " bytes"));
  }
  absl::MutexLock lock(&mu_);
  if (state_[Index(tag)] == TagState::kReleased) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Allocate('", name, "', ", bytes, " bytes): tag ", MemoryTagName(tag),
        " is released; resume it first"));
  }
  auto a = std::make_unique<Allocation>();
  a->tag = tag;
  a->name = std::string(name);
  a->bytes = options_.backend->RoundUp(bytes);
  absl::StatusOr<Reservation> va = options_.backend->Reserve(a->bytes);
  if (!va.ok()) {
    return absl::Status(va.status().code(),
                        absl::StrCat("Allocate('", name, "', tag ",
                                     MemoryTagName(tag), "): ",
                                     va.status().message()));
  }
  a->va = std::move(*va);
  absl::Status s = MapAllocationLocked(*a);
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("Allocate('", name, "', tag ",
                                               MemoryTagName(tag), ", ",
                                               a->bytes, " bytes): ",
                                               s.message()));
  }
  void* ptr = a->va.base();
  allocations_[ptr] = std::move(a);
  return ptr;
}

absl::Status TaggedPool::Free(void* ptr) {
  absl::MutexLock lock(&mu_);
  auto it = allocations_.find(ptr);
  if (it == allocations_.end()) {
    return absl::NotFoundError(absl::StrFormat(
        "TaggedPool::Free(%p): not an allocation of this pool", ptr));
  }
  Allocation& a = *it->second;
  if (a.mapped()) {
    // cuMemUnmap/cuMemRelease do not wait for device work: nothing queued
    // may still touch the allocation when its memory goes. On failure the
    // allocation stays (a leak rather than a fault).
    if (absl::Status sync = options_.backend->Synchronize(); !sync.ok()) {
      return absl::Status(sync.code(),
                          absl::StrCat("TaggedPool::Free('", a.name, "'): synchronizing the "
                                       "device before unmapping failed; the allocation stays: ",
                                       sync.message()));
    }
  }
  // A backup slice of a released allocation just becomes dead space in the
  // tag's stream until the tag is resumed.
  absl::Status s = UnmapAllocationLocked(a);
  absl::Status va = a.va.Reset();
  if (s.ok()) s = va;
  allocations_.erase(it);
  return s;
}

absl::StatusOr<size_t> TaggedPool::AllocationSize(void* ptr) const {
  absl::MutexLock lock(&mu_);
  auto it = allocations_.find(ptr);
  if (it == allocations_.end()) {
    return absl::NotFoundError(absl::StrFormat(
        "TaggedPool::AllocationSize(%p): not an allocation of this pool",
        ptr));
  }
  return it->second->bytes;
}

absl::Status TaggedPool::MapAllocationLocked(Allocation& a) {
  DeviceBackend* b = options_.backend;
  for (size_t offset = 0; offset < a.bytes; offset += physical_chunk_bytes_) {
    const size_t n = std::min(physical_chunk_bytes_, a.bytes - offset);
    absl::StatusOr<PhysicalAllocation> chunk = b->CreateChunk(n);
    absl::Status s = chunk.status();
    if (s.ok()) {
      absl::StatusOr<Mapping> m = b->Map(a.base() + offset, *chunk);
      s = m.status();
      if (s.ok()) {
        a.chunks.push_back(std::move(*chunk));
        a.mappings.push_back(std::move(*m));
        continue;
      }
    }
    UnmapAllocationLocked(a).IgnoreError();  // errors are logged
    return absl::Status(s.code(),
                        absl::StrCat("mapping chunk at offset ", offset, " of ",
                                     a.bytes, " bytes: ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status TaggedPool::UnmapAllocationLocked(Allocation& a) {
  absl::Status first;
  for (Mapping& m : a.mappings) {
    absl::Status s = m.Reset();
    if (!s.ok()) {
      COLO_LOG(ERROR) << "unmapping '" << a.name << "': " << s;
      if (first.ok()) first = s;
    }
  }
  a.mappings.clear();
  for (PhysicalAllocation& c : a.chunks) {
    absl::Status s = c.Reset();
    if (!s.ok()) {
      COLO_LOG(ERROR) << "releasing '" << a.name << "': " << s;
      if (first.ok()) first = s;
    }
  }
  a.chunks.clear();
  return first;
}

absl::StatusOr<void*> TaggedPool::TakeHostBufferLocked() {
  if (!idle_host_buffers_.empty()) {
    void* buffer = idle_host_buffers_.back();
    idle_host_buffers_.pop_back();
    return buffer;
  }
  absl::StatusOr<void*> buffer =
      options_.backend->AllocateHost(host_chunk_bytes_);
  if (buffer.ok()) host_buffers_total_ += host_chunk_bytes_;
  return buffer;
}

absl::Status TaggedPool::BackupAllocationLocked(Allocation& a) {
  DeviceBackend* b = options_.backend;
  BackupStream& stream = backups_[Index(a.tag)];
  const uint64_t start = stream.used;
  uint64_t done = 0;
  while (done < a.bytes) {
    const uint64_t pos = start + done;
    const size_t index = pos / host_chunk_bytes_;
    const size_t within = pos % host_chunk_bytes_;
    while (stream.buffers.size() <= index) {
      absl::StatusOr<void*> buffer = TakeHostBufferLocked();
      if (!buffer.ok()) return buffer.status();
      stream.buffers.push_back(*buffer);
    }
    const size_t n = std::min<uint64_t>(host_chunk_bytes_ - within,
                                        a.bytes - done);
    absl::Status s = b->CopyToHost(
        static_cast<char*>(stream.buffers[index]) + within, a.base() + done, n);
    if (!s.ok()) return s;
    done += n;
  }
  stream.used = start + a.bytes;
  a.has_backup = true;
  a.backup_offset = start;
  return absl::OkStatus();
}

absl::Status TaggedPool::RestoreAllocationLocked(Allocation& a) {
  DeviceBackend* b = options_.backend;
  const BackupStream& stream = backups_[Index(a.tag)];
  uint64_t done = 0;
  while (done < a.bytes) {
    const uint64_t pos = a.backup_offset + done;
    const size_t index = pos / host_chunk_bytes_;
    const size_t within = pos % host_chunk_bytes_;
    const size_t n = std::min<uint64_t>(host_chunk_bytes_ - within,
                                        a.bytes - done);
    absl::Status s = b->CopyToDevice(
        a.base() + done, static_cast<const char*>(stream.buffers[index]) + within,
        n);
    if (!s.ok()) return s;
    done += n;
  }
  return absl::OkStatus();
}

void TaggedPool::DropTagBackupLocked(MemoryTag tag) {
  BackupStream& stream = backups_[Index(tag)];
  for (void* buffer : stream.buffers) idle_host_buffers_.push_back(buffer);
  stream.buffers.clear();
  stream.used = 0;
  for (auto& [ptr, a] : allocations_) {
    if (a->tag == tag) a->has_backup = false;
  }
}

absl::StatusOr<ReleaseReport> TaggedPool::Release(
    const std::vector<MemoryTag>& requested) {
  absl::StatusOr<std::vector<MemoryTag>> tags = Normalize(requested);
  if (!tags.ok()) return tags.status();
  const absl::Time start = absl::Now();
  absl::MutexLock lock(&mu_);
  DeviceBackend* b = options_.backend;
  ReleaseReport report;
  // Quiesce: no kernel may still touch the memory we unmap.
  absl::Status s = b->Synchronize();
  if (!s.ok()) return s;

  // Phase 1: host copies for every tag that wants them. Nothing is unmapped
  // yet, so a failure here leaves every tag resident.
  std::vector<MemoryTag> backed_up_tags;
  std::vector<absl::Duration> backup_time(kNumMemoryTags);
  for (MemoryTag tag : *tags) {
    if (state_[Index(tag)] == TagState::kReleased) continue;
    if (options_.backup[Index(tag)] != BackupPolicy::kHostCopy) continue;
    if (options_.debug_skip_release_tag == tag) continue;
    const absl::Time t0 = absl::Now();
    backed_up_tags.push_back(tag);
    for (auto& [ptr, a] : allocations_) {
      if (a->tag != tag || !a->mapped()) continue;
      s = BackupAllocationLocked(*a);
      if (!s.ok()) {
        for (MemoryTag done : backed_up_tags) DropTagBackupLocked(done);
        return absl::Status(
            s.code(), absl::StrCat("Release: host backup of '", a->name,
                                   "' (tag ", MemoryTagName(tag), ", ",
                                   a->bytes, " bytes) failed, nothing "
                                   "released: ", s.message()));
      }
    }
    backup_time[Index(tag)] = absl::Now() - t0;
  }

  // Phase 2: unmap and free physical memory; the VA ranges stay reserved.
  absl::Status unmap_error;
  for (MemoryTag tag : *tags) {
    const absl::Time t0 = absl::Now();
    TagReleaseReport r;
    r.tag = tag;
    if (state_[Index(tag)] == TagState::kReleased) {
      r.no_op = true;
      report.tags.push_back(r);
      continue;
    }
    const bool lie = options_.debug_skip_release_tag == tag;
    for (auto& [ptr, a] : allocations_) {
      if (a->tag != tag || !a->mapped()) continue;
      r.bytes_freed += a->bytes;
      if (a->has_backup) r.backup_bytes += a->bytes;
      if (lie) continue;
      absl::Status u = UnmapAllocationLocked(*a);
      if (!u.ok() && unmap_error.ok()) {
        unmap_error = absl::InternalError(absl::StrCat(
            "Release: unmapping '", a->name, "' (tag ", MemoryTagName(tag),
            ", ", a->bytes, " bytes) failed; memory may be stranded: ",
            u.message()));
      }
    }
    if (lie) {
      COLO_LOG(WARNING) << "debug_skip_release_tag: pretending to release "
                        << MemoryTagName(tag) << " (" << r.bytes_freed
                        << " bytes stay mapped)";
    }
    state_[Index(tag)] = TagState::kReleased;
    r.duration = backup_time[Index(tag)] + (absl::Now() - t0);
    report.tags.push_back(r);
  }
  if (!unmap_error.ok()) return unmap_error;
  s = b->Synchronize();
  if (!s.ok()) return s;
  report.duration = absl::Now() - start;
  return report;
}

absl::StatusOr<ResumeReport> TaggedPool::Resume(
    const std::vector<MemoryTag>& requested) {
  absl::StatusOr<std::vector<MemoryTag>> tags = Normalize(requested);
  if (!tags.ok()) return tags.status();
  const absl::Time start = absl::Now();
  absl::MutexLock lock(&mu_);
  DeviceBackend* b = options_.backend;
  ResumeReport report;
  std::vector<Allocation*> mapped_here;
  auto rollback = [&](const absl::Status& cause, absl::string_view what) {
    uint64_t undone = 0;
    for (Allocation* a : mapped_here) {
      undone += a->bytes;
      UnmapAllocationLocked(*a).IgnoreError();  // errors are logged
    }
    return absl::Status(
        cause.code(),
        absl::StrCat("Resume: ", what, " failed; rolled back ", undone,
                     " bytes mapped by this call, requested tags stay "
                     "released: ",
                     cause.message()));
  };
  // AllMemoryTags() order: cuda_graph, weights, kv_cache.
  for (MemoryTag tag : *tags) {
    const absl::Time t0 = absl::Now();
    TagResumeReport r;
    r.tag = tag;
    if (state_[Index(tag)] == TagState::kResident) {
      r.no_op = true;
      report.tags.push_back(r);
      continue;
    }
    for (auto& [ptr, a] : allocations_) {
      if (a->tag != tag || a->mapped()) continue;
      absl::Status s = MapAllocationLocked(*a);
      if (!s.ok()) {
        return rollback(s, absl::StrCat("mapping '", a->name, "' (tag ",
                                        MemoryTagName(tag), ", ", a->bytes,
                                        " bytes)"));
      }
      mapped_here.push_back(a.get());
      r.bytes_mapped += a->bytes;
      if (a->has_backup) {
        s = RestoreAllocationLocked(*a);
        if (!s.ok()) {
          return rollback(s, absl::StrCat("restoring '", a->name, "' (tag ",
                                          MemoryTagName(tag), ")"));
        }
        r.bytes_restored += a->bytes;
      }
    }
    r.duration = absl::Now() - t0;
    report.tags.push_back(r);
  }
  absl::Status s = b->Synchronize();
  if (!s.ok()) return rollback(s, "synchronize");
  // Commit: every requested tag is resident; host copies go back to the pool.
  for (const TagResumeReport& r : report.tags) {
    if (r.no_op) continue;
    state_[Index(r.tag)] = TagState::kResident;
    DropTagBackupLocked(r.tag);
  }
  report.duration = absl::Now() - start;
  return report;
}

bool TaggedPool::IsReleased(MemoryTag tag) const {
  if (!ValidTag(tag)) return false;
  absl::MutexLock lock(&mu_);
  return state_[Index(tag)] == TagState::kReleased;
}

PoolInfo TaggedPool::Info() const {
  absl::MutexLock lock(&mu_);
  PoolInfo info;
  info.granularity = options_.backend->granularity();
  info.host_pool_bytes = host_buffers_total_;
  for (MemoryTag tag : AllMemoryTags()) {
    TagInfo t;
    t.tag = tag;
    t.state = state_[Index(tag)];
    t.backup = options_.backup[Index(tag)];
    const bool lie = options_.debug_skip_release_tag == tag &&
                     t.state == TagState::kReleased;
    for (const auto& [ptr, a] : allocations_) {
      if (a->tag != tag) continue;
      ++t.allocation_count;
      t.reserved_bytes += a->bytes;
      if (a->mapped() && !lie) t.resident_bytes += a->bytes;
      if (a->has_backup) t.backup_bytes += a->bytes;
    }
    info.tags.push_back(t);
  }
  return info;
}

uint64_t TaggedPool::TrimHostPool() {
  absl::MutexLock lock(&mu_);
  uint64_t freed = 0;
  for (void* buffer : idle_host_buffers_) {
    absl::Status s = options_.backend->FreeHost(buffer, host_chunk_bytes_);
    if (!s.ok()) COLO_LOG(ERROR) << "freeing host backup buffer: " << s;
    freed += host_chunk_bytes_;
  }
  idle_host_buffers_.clear();
  host_buffers_total_ -= freed;
  return freed;
}

}  // namespace engine
}  // namespace colo
