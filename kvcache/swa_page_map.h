// SwaPageMap: the full-page -> SWA-page association of a hybrid model.
//
// Bookkeeping is per page (host vector, 4 bytes per full page). When a slot
// writer is attached (it stores into the layout contract's full_to_swa array,
// int32 [num_full_pages * page_size] in kv_cache memory, which may be device
// memory) every change is mirrored per slot, page-wide: full slot f*P+o maps
// to SWA slot s*P+o, or kNoSwaSlot. Pages are always cleared page-wide (cf.
// SGLang #27779).
//
// Not thread-safe: confined to the scheduler thread.
#ifndef COLO_KVCACHE_SWA_PAGE_MAP_H_
#define COLO_KVCACHE_SWA_PAGE_MAP_H_

#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "kvcache/kv_layout.h"

namespace colo::kvcache {

class SwaPageMap {
 public:
  SwaPageMap(int32_t num_full_pages, int32_t page_size)
      : page_size_(page_size), map_(num_full_pages, kNoSwaSlot) {}

  // Stores `n` slot entries starting at full slot `first_slot`.
  using SlotWriter = std::function<void(int64_t first_slot, const int32_t* values, int64_t n)>;

  // Attaches (or detaches with nullptr) the slot writer. Does not write:
  // call RewriteSlotTable() after attaching or after the memory was resumed.
  void AttachSlotWriter(SlotWriter writer) { writer_ = std::move(writer); }

  void Set(int32_t full_page, int32_t swa_page) {
    map_[full_page] = swa_page;
    WriteSlots(full_page);
  }
  void Clear(int32_t full_page) { Set(full_page, kNoSwaSlot); }
  int32_t Get(int32_t full_page) const { return map_[full_page]; }

  // Clears every page (flush / reset).
  void Reset() {
    map_.assign(map_.size(), kNoSwaSlot);
    RewriteSlotTable();
  }
  // Writes every page of the slot table from the bookkeeping (one write).
  void RewriteSlotTable() {
    if (!writer_) return;
    std::vector<int32_t> slots(map_.size() * static_cast<size_t>(page_size_));
    for (size_t p = 0; p < map_.size(); ++p) Fill(map_[p], &slots[p * page_size_]);
    writer_(0, slots.data(), static_cast<int64_t>(slots.size()));
  }
  int32_t num_full_pages() const { return static_cast<int32_t>(map_.size()); }

 private:
  void Fill(int32_t s, int32_t* out) const {
    for (int32_t o = 0; o < page_size_; ++o) out[o] = s == kNoSwaSlot ? kNoSwaSlot : s * page_size_ + o;
  }
  void WriteSlots(int32_t full_page) {
    if (!writer_) return;
    int32_t buf[256];
    std::vector<int32_t> big;
    int32_t* out = buf;
    if (page_size_ > 256) {
      big.resize(page_size_);
      out = big.data();
    }
    Fill(map_[full_page], out);
    writer_(static_cast<int64_t>(full_page) * page_size_, out, page_size_);
  }

  const int32_t page_size_;
  std::vector<int32_t> map_;
  SlotWriter writer_;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_SWA_PAGE_MAP_H_
