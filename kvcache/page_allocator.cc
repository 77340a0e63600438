#include "kvcache/page_allocator.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kvcache/kv_layout.h"

namespace colo::kvcache {

absl::StatusOr<PageAllocator> PageAllocator::Create(const Options& options) {
  if (options.num_pages < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PageAllocator '", options.name, "': num_pages must be >= 2 (page 0 is "
        "the padding page), got ", options.num_pages));
  }
  return PageAllocator(options.num_pages, options.name);
}

PageAllocator::PageAllocator(int32_t num_pages, std::string name)
    : num_pages_(num_pages), name_(std::move(name)) {
  Reset();
}

void PageAllocator::Reset() {
  state_.assign(num_pages_, kFree);
  state_[kPaddingPage] = kAllocated;  // Never on the free list.
  free_.clear();
  free_.reserve(num_pages_ - 1);
  // Highest id at the bottom so that low ids are handed out first.
  for (int32_t p = num_pages_ - 1; p >= 1; --p) free_.push_back(p);
}

absl::Status PageAllocator::Allocate(int32_t n, std::vector<int32_t>* pages) {
  if (n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pool '", name_, "': negative page count ", n));
  }
  if (n > num_free()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("pool '", name_, "': need ", n, " pages, ", num_free(),
                     " free of ", capacity()));
  }
  for (int32_t i = 0; i < n; ++i) {
    const int32_t page = free_.back();
    free_.pop_back();
    state_[page] = kAllocated;
    pages->push_back(page);
  }
  return absl::OkStatus();
}

absl::Status PageAllocator::Free(absl::Span<const int32_t> pages) {
  // Pass 1: validate and mark; roll back the marks on error.
  for (size_t i = 0; i < pages.size(); ++i) {
    const int32_t page = pages[i];
    std::string error;
    if (page <= kPaddingPage || page >= num_pages_) {
      error = absl::StrCat("page ", page, " out of range [1, ", num_pages_, ")");
    } else if (state_[page] == kPendingFree) {
      error = absl::StrCat("page ", page, " repeated in one free call");
    } else if (state_[page] != kAllocated) {
      error = absl::StrCat("page ", page, " is not allocated (double free)");
    }
    if (!error.empty()) {
      for (size_t j = 0; j < i; ++j) state_[pages[j]] = kAllocated;
      return absl::InvalidArgumentError(
          absl::StrCat("pool '", name_, "': free rejected: ", error));
    }
    state_[page] = kPendingFree;
  }
  for (int32_t page : pages) {
    state_[page] = kFree;
    free_.push_back(page);
  }
  return absl::OkStatus();
}

}  // namespace colo::kvcache
