// SwaPageMap: the full-page -> SWA-page association of a hybrid model.
//
// Bookkeeping is per page (host vector, 4 bytes per full page). When a slot
// table is attached (int32 [num_full_pages * page_size], the layout contract's
// full_to_swa array living in kv_cache memory) every change is mirrored per
// slot, page-wide: full slot f*P+o maps to SWA slot s*P+o, or kNoSwaSlot.
// Pages are always cleared page-wide (cf. SGLang #27779).
//
// Not thread-safe: confined to the scheduler thread.
#ifndef COLO_KVCACHE_SWA_PAGE_MAP_H_
#define COLO_KVCACHE_SWA_PAGE_MAP_H_

#include <cstdint>
#include <vector>

#include "kvcache/kv_layout.h"

namespace colo::kvcache {

class SwaPageMap {
 public:
  SwaPageMap(int32_t num_full_pages, int32_t page_size)
      : page_size_(page_size), map_(num_full_pages, kNoSwaSlot) {}

  // Attaches (or detaches with nullptr) the per-slot table; it must hold
  // num_full_pages * page_size int32 entries. Does not write it: call
  // RewriteSlotTable() after attaching or after the memory was resumed.
  void AttachSlotTable(int32_t* slot_table) { slot_table_ = slot_table; }

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
  // Writes every page of the slot table from the bookkeeping.
  void RewriteSlotTable() {
    if (slot_table_ == nullptr) return;
    for (int32_t p = 0; p < static_cast<int32_t>(map_.size()); ++p) WriteSlots(p);
  }
  int32_t num_full_pages() const { return static_cast<int32_t>(map_.size()); }

 private:
  void WriteSlots(int32_t full_page) {
    if (slot_table_ == nullptr) return;
    const int32_t s = map_[full_page];
    int32_t* row = slot_table_ + static_cast<int64_t>(full_page) * page_size_;
    for (int32_t o = 0; o < page_size_; ++o) {
      row[o] = s == kNoSwaSlot ? kNoSwaSlot : s * page_size_ + o;
    }
  }

  const int32_t page_size_;
  std::vector<int32_t> map_;
  int32_t* slot_table_ = nullptr;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_SWA_PAGE_MAP_H_
