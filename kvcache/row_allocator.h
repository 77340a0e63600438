// RowAllocator: free list of request-to-token table rows [1, max_requests].
// Row 0 is the dummy padding row and is never handed out.
//
// Not thread-safe: confined to the scheduler thread.
#ifndef COLO_KVCACHE_ROW_ALLOCATOR_H_
#define COLO_KVCACHE_ROW_ALLOCATOR_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace colo::kvcache {

class RowAllocator {
 public:
  explicit RowAllocator(int32_t max_requests) : used_(max_requests + 1, 0) {
    Reset();
  }

  // RESOURCE_EXHAUSTED when every row is taken.
  absl::StatusOr<int32_t> Allocate() {
    if (free_.empty()) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "no free request row: all ", capacity(), " rows in use"));
    }
    const int32_t row = free_.back();
    free_.pop_back();
    used_[row] = 1;
    return row;
  }
  // INVALID_ARGUMENT for row 0, out of range or a row that is not in use.
  absl::Status Free(int32_t row) {
    if (row <= 0 || row > capacity() || !used_[row]) {
      return absl::InvalidArgumentError(
          absl::StrCat("request row ", row, " is not allocated"));
    }
    used_[row] = 0;
    free_.push_back(row);
    return absl::OkStatus();
  }
  void Reset() {
    free_.clear();
    for (int32_t r = capacity(); r >= 1; --r) {
      free_.push_back(r);
      used_[r] = 0;
    }
  }
  bool IsAllocated(int32_t row) const {
    return row > 0 && row <= capacity() && used_[row];
  }
  int32_t capacity() const { return static_cast<int32_t>(used_.size()) - 1; }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }

 private:
  std::vector<int32_t> free_;
  std::vector<uint8_t> used_;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_ROW_ALLOCATOR_H_
