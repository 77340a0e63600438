// PageAllocator: free-list bookkeeping for one KV pool, in whole pages.
//
// Pages are numbered [0, num_pages). Page 0 (kPaddingPage) is reserved and is
// never handed out, so the allocatable capacity is num_pages - 1. The
// allocator tracks only page ids; the memory behind them is owned by KvPool.
//
// Not thread-safe: confined to the scheduler thread (see KvCacheManager).
#ifndef COLO_KVCACHE_PAGE_ALLOCATOR_H_
#define COLO_KVCACHE_PAGE_ALLOCATOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace colo::kvcache {

class PageAllocator {
 public:
  struct Options {
    // Total pages including the padding page; must be >= 2.
    int32_t num_pages = 0;
    // Name used in error messages ("full", "swa").
    std::string name = "pool";
  };

  // INVALID_ARGUMENT if num_pages < 2.
  static absl::StatusOr<PageAllocator> Create(const Options& options);

  // Appends `n` page ids to `*pages`. All-or-nothing: RESOURCE_EXHAUSTED
  // (naming the pool, n and the free count) leaves the state unchanged.
  absl::Status Allocate(int32_t n, std::vector<int32_t>* pages);

  // Returns `pages` to the free list. All-or-nothing: INVALID_ARGUMENT if any
  // id is out of range, the padding page, not currently allocated (double
  // free) or repeated within this call; the state is then unchanged.
  absl::Status Free(absl::Span<const int32_t> pages);

  // Marks every page free (used by flush / reset-for-release).
  void Reset();

  bool IsAllocated(int32_t page) const {
    return page > 0 && page < num_pages_ && state_[page] == kAllocated;
  }
  int32_t num_pages() const { return num_pages_; }
  // Allocatable pages (num_pages - 1).
  int32_t capacity() const { return num_pages_ - 1; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_allocated() const { return capacity() - num_free(); }
  const std::string& name() const { return name_; }

 private:
  enum State : uint8_t { kFree = 0, kAllocated = 1, kPendingFree = 2 };
  PageAllocator(int32_t num_pages, std::string name);

  int32_t num_pages_;
  std::string name_;
  std::vector<int32_t> free_;    // LIFO stack of free page ids.
  std::vector<uint8_t> state_;   // Per page: State.
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_PAGE_ALLOCATOR_H_
