#include "engine/memory/caching_allocator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace {

constexpr size_t kMinBlockBytes = 512;
constexpr size_t kSmallRequestBytes = size_t{1} << 20;  // <= goes small
constexpr size_t kSmallSegmentBytes = size_t{2} << 20;
constexpr size_t kMidRequestBytes = size_t{10} << 20;
constexpr size_t kDefaultLargeSegmentBytes = size_t{20} << 20;
constexpr size_t kDefaultMaxAllocationBytes = size_t{1} << 40;

size_t RoundTo(size_t bytes, size_t multiple) {
  return (bytes + multiple - 1) / multiple * multiple;
}

}  // namespace

struct CachingAllocator::Block {
  Segment* segment = nullptr;
  char* ptr = nullptr;
  size_t size = 0;
  bool allocated = false;
  Block* prev = nullptr;  // neighbours inside the segment
  Block* next = nullptr;
};

struct CachingAllocator::Segment {
  Reservation va;
  PhysicalAllocation chunk;
  Mapping mapping;
  size_t bytes = 0;
  bool small = false;
  Block* head = nullptr;  // first block; blocks tile the segment

  ~Segment() {
    Block* b = head;
    while (b != nullptr) {
      Block* next = b->next;
      delete b;
      b = next;
    }
    // Members are destroyed in reverse order: mapping, chunk, va.
  }
};

bool CachingAllocator::BlockLess::operator()(const Block* a,
                                             const Block* b) const {
  if (a->size != b->size) return a->size < b->size;
  return a->ptr < b->ptr;
}

absl::StatusOr<std::unique_ptr<CachingAllocator>> CachingAllocator::Create(
    const Options& options) {
  if (options.backend == nullptr) {
    return absl::InvalidArgumentError(
        "CachingAllocator::Options::backend is null");
  }
  return std::unique_ptr<CachingAllocator>(new CachingAllocator(options));
}

CachingAllocator::CachingAllocator(const Options& options)
    : backend_(options.backend),
      max_allocation_bytes_(options.max_allocation_bytes == 0
                                ? kDefaultMaxAllocationBytes
                                : options.max_allocation_bytes),
      large_segment_bytes_(options.large_segment_bytes == 0
                               ? kDefaultLargeSegmentBytes
                               : options.large_segment_bytes) {}

CachingAllocator::~CachingAllocator() {
  absl::MutexLock lock(&mu_);
  small_free_.clear();
  large_free_.clear();
  live_.clear();
  if (!segments_.empty()) {
    // cuMemUnmap/cuMemRelease do not wait for device work: nothing queued
    // may still touch a segment when it goes.
    if (absl::Status s = backend_->Synchronize(); !s.ok()) {
      COLO_LOG(ERROR) << "CachingAllocator: synchronizing before returning " << segments_.size()
                      << " segment(s) failed (returning them anyway): " << s;
    }
  }
  segments_.clear();
}

absl::StatusOr<CachingAllocator::Block*> CachingAllocator::NewSegmentLocked(
    size_t segment_bytes, bool small) {
  auto seg = std::make_unique<Segment>();
  seg->bytes = backend_->RoundUp(segment_bytes);
  seg->small = small;
  absl::StatusOr<Reservation> va = backend_->Reserve(seg->bytes);
  if (!va.ok()) return va.status();
  seg->va = std::move(*va);
  absl::StatusOr<PhysicalAllocation> chunk = backend_->CreateChunk(seg->bytes);
  if (!chunk.ok()) return chunk.status();
  seg->chunk = std::move(*chunk);
  absl::StatusOr<Mapping> mapping = backend_->Map(seg->va.base(), seg->chunk);
  if (!mapping.ok()) return mapping.status();
  seg->mapping = std::move(*mapping);
  Block* block = new Block;
  block->segment = seg.get();
  block->ptr = static_cast<char*>(seg->va.base());
  block->size = seg->bytes;
  seg->head = block;
  stats_.reserved_bytes += seg->bytes;
  stats_.peak_reserved_bytes =
      std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  ++stats_.segments;
  ++stats_.segment_allocs;
  segments_.push_back(std::move(seg));
  return block;
}

absl::StatusOr<void*> CachingAllocator::Allocate(size_t bytes) {
  if (bytes == 0) {
    return absl::InvalidArgumentError(
        "CachingAllocator::Allocate: size must be positive, got 0 bytes");
  }
  if (bytes > max_allocation_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CachingAllocator::Allocate: ", bytes, " bytes exceeds the limit of ",
        max_allocation_bytes_, " bytes"));
  }
  const size_t size = RoundTo(bytes, kMinBlockBytes);
  const bool small = size <= kSmallRequestBytes;
  absl::MutexLock lock(&mu_);
  FreeBins& bins = BinsFor(small);
  Block key;
  key.size = size;
  Block* block = nullptr;
  auto it = bins.lower_bound(&key);
  if (it != bins.end()) {
    block = *it;
    bins.erase(it);
  } else {
    size_t segment_bytes;
    if (small) {
      segment_bytes = kSmallSegmentBytes;
    } else if (size < kMidRequestBytes) {
      segment_bytes = std::max(large_segment_bytes_, size);
    } else {
      segment_bytes = size;
    }
    absl::StatusOr<Block*> fresh = NewSegmentLocked(segment_bytes, small);
    if (!fresh.ok() &&
        fresh.status().code() == absl::StatusCode::kResourceExhausted) {
      const uint64_t returned = EmptyCacheLocked();
      COLO_LOG(WARNING) << "CachingAllocator: out of memory for a "
                        << segment_bytes << "-byte segment; emptied "
                        << returned << " cached bytes and retrying";
      fresh = NewSegmentLocked(segment_bytes, small);
    }
    if (!fresh.ok()) {
      return absl::Status(
          fresh.status().code(),
          absl::StrCat("CachingAllocator::Allocate(", bytes,
                       " bytes): new segment of ", segment_bytes,
                       " bytes failed (reserved ", stats_.reserved_bytes,
                       ", allocated ", stats_.allocated_bytes,
                       "): ", fresh.status().message()));
    }
    block = *fresh;
  }
  // Split off the tail when it is worth keeping.
  const size_t remaining = block->size - size;
  const bool split = small ? remaining >= kMinBlockBytes
                           : remaining > kSmallRequestBytes;
  if (split) {
    Block* tail = new Block;
    tail->segment = block->segment;
    tail->ptr = block->ptr + size;
    tail->size = remaining;
    tail->prev = block;
    tail->next = block->next;
    if (block->next != nullptr) block->next->prev = tail;
    block->next = tail;
    block->size = size;
    bins.insert(tail);
  }
  block->allocated = true;
  live_[block->ptr] = block;
  stats_.allocated_bytes += block->size;
  stats_.peak_allocated_bytes =
      std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  ++stats_.alloc_count;
  return static_cast<void*>(block->ptr);
}

absl::Status CachingAllocator::Free(void* ptr) {
  absl::MutexLock lock(&mu_);
  auto it = live_.find(ptr);
  if (it == live_.end()) {
    return absl::NotFoundError(absl::StrFormat(
        "CachingAllocator::Free(%p): not a live block of this allocator", ptr));
  }
  Block* block = it->second;
  live_.erase(it);
  block->allocated = false;
  stats_.allocated_bytes -= block->size;
  ++stats_.free_count;
  FreeBins& bins = BinsFor(block->segment->small);
  // Coalesce with free neighbours.
  if (Block* prev = block->prev; prev != nullptr && !prev->allocated) {
    bins.erase(prev);
    prev->size += block->size;
    prev->next = block->next;
    if (block->next != nullptr) block->next->prev = prev;
    delete block;
    block = prev;
  }
  if (Block* next = block->next; next != nullptr && !next->allocated) {
    bins.erase(next);
    block->size += next->size;
    block->next = next->next;
    if (next->next != nullptr) next->next->prev = block;
    delete next;
  }
  bins.insert(block);
  return absl::OkStatus();
}

uint64_t CachingAllocator::EmptyCache() {
  absl::MutexLock lock(&mu_);
  return EmptyCacheLocked();
}

uint64_t CachingAllocator::EmptyCacheLocked() {
  uint64_t returned = 0;
  bool any_free = false;
  for (const std::unique_ptr<Segment>& seg : segments_) {
    any_free |= !seg->head->allocated && seg->head->next == nullptr;
  }
  if (!any_free) return 0;
  // cuMemUnmap/cuMemRelease do not wait for device work: a kernel still
  // writing a freed block (e.g. an NCCL broadcast into weight-update staging
  // that timed out and was aborted) would fault on the unmapped range. Wait
  // for the device first (as PyTorch's expandable segments and
  // torch_memory_saver do); if that fails, keep the segments (a leak, not a
  // fault) and report nothing returned.
  if (absl::Status s = backend_->Synchronize(); !s.ok()) {
    COLO_LOG(ERROR) << "EmptyCache: synchronizing the device failed; keeping every cached "
                       "segment mapped: "
                    << s;
    return 0;
  }
  auto keep = segments_.begin();
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    Segment& seg = **it;
    const bool fully_free = !seg.head->allocated && seg.head->next == nullptr;
    if (!fully_free) {
      if (keep != it) *keep = std::move(*it);
      ++keep;
      continue;
    }
    BinsFor(seg.small).erase(seg.head);
    returned += seg.bytes;
    stats_.reserved_bytes -= seg.bytes;
    --stats_.segments;
    ++stats_.segment_frees;
    absl::Status s = seg.mapping.Reset();
    if (s.ok()) s = seg.chunk.Reset();
    if (s.ok()) s = seg.va.Reset();
    if (!s.ok()) COLO_LOG(ERROR) << "EmptyCache: returning segment: " << s;
    it->reset();
  }
  segments_.erase(keep, segments_.end());
  return returned;
}

CachingAllocatorStats CachingAllocator::Stats() const {
  absl::MutexLock lock(&mu_);
  CachingAllocatorStats s = stats_;
  uint64_t largest = 0;
  if (!small_free_.empty()) largest = (*small_free_.rbegin())->size;
  if (!large_free_.empty()) {
    largest = std::max<uint64_t>(largest, (*large_free_.rbegin())->size);
  }
  s.largest_free_block_bytes = largest;
  const uint64_t free_bytes = s.reserved_bytes - s.allocated_bytes;
  s.fragmentation =
      free_bytes == 0 ? 0.0
                      : 1.0 - static_cast<double>(largest) /
                                  static_cast<double>(free_bytes);
  return s;
}

void CachingAllocator::ResetPeakStats() {
  absl::MutexLock lock(&mu_);
  stats_.peak_allocated_bytes = stats_.allocated_bytes;
  stats_.peak_reserved_bytes = stats_.reserved_bytes;
}

}  // namespace engine
}  // namespace colo
