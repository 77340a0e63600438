// KvSeq: the KV bookkeeping of one sequence (a running request or a session
// between turns). Internal to KvCacheManager; exposed for the audit and tests.
//
// Page i of the sequence covers positions [i*P, (i+1)*P).
// - Pages with index < protected_len / P are owned by the radix tree (locked
//   through `lock`); swa_pages[i] is kNoSwaSlot for them (the tree's map is
//   the truth).
// - Pages with index >= protected_len / P are the sequence's own. Their SWA
//   page is kNoSwaSlot once freed by the window frontier (swa_evicted_len).
// Ladder: protected_len <= committed_len <= allocated_len,
//         swa_evicted_len <= committed_len, protected/swa_evicted % P == 0,
//         full_pages.size() == ceil(allocated_len / P).
#ifndef COLO_KVCACHE_KV_SEQ_H_
#define COLO_KVCACHE_KV_SEQ_H_

#include <cstdint>
#include <vector>

#include "kvcache/radix_cache.h"

namespace colo::kvcache {

struct KvSeq {
  int32_t row = -1;
  std::vector<int32_t> tokens;      // Token ids of positions [0, allocated_len).
  std::vector<int32_t> full_pages;  // ceil(allocated_len / P) entries.
  std::vector<int32_t> swa_pages;   // Same count in SWA mode, else empty.
  int32_t protected_len = 0;
  int32_t committed_len = 0;
  int32_t allocated_len = 0;
  int32_t swa_evicted_len = 0;
  RadixCache::LockHandle lock;
  // Pages owned by this sequence (not the tree): cheap counters.
  int32_t own_full = 0;
  int32_t own_swa = 0;
};

}  // namespace colo::kvcache

#endif  // COLO_KVCACHE_KV_SEQ_H_
