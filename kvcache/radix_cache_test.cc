#include "kvcache/radix_cache.h"

#include <memory>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::kvcache {
namespace {

using ::testing::ElementsAre;

// A tree with its own allocators; hands out pages for keys like a request.
class Fixture {
 public:
  Fixture(int32_t page_size, int32_t window, int32_t pages = 64)
      : full_(*PageAllocator::Create({.num_pages = pages, .name = "full"})),
        swa_(*PageAllocator::Create({.num_pages = pages, .name = "swa"})),
        map_(pages, page_size),
        tree_({.page_size = page_size,
               .sliding_window = window,
               .full_allocator = &full_,
               .swa_allocator = &swa_,
               .swa_map = &map_}) {}

  // Inserts `tokens` with fresh pages; the first `swa_evicted` pages get no
  // SWA page. Frees duplicates like a request would.
  RadixCache::InsertResult Insert(const std::vector<int32_t>& tokens, int32_t swa_evicted = 0) {
    const int32_t n = static_cast<int32_t>(tokens.size()) / tree_.page_size();
    std::vector<int32_t> fp, sp;
    EXPECT_OK(full_.Allocate(n, &fp));
    if (tree_.swa_mode()) {
      std::vector<int32_t> live;
      EXPECT_OK(swa_.Allocate(n - swa_evicted, &live));
      sp.assign(swa_evicted, kNoSwaSlot);
      sp.insert(sp.end(), live.begin(), live.end());
      for (int32_t i = 0; i < n; ++i) map_.Set(fp[i], sp[i]);
    }
    auto r = tree_.Insert(tokens, fp, sp);
    for (int32_t f : r.dup_full_pages) map_.Clear(f);
    EXPECT_OK(full_.Free(r.dup_full_pages));
    EXPECT_OK(swa_.Free(r.dup_swa_pages));
    // Pages beyond inserted_length stay ours: free them.
    std::vector<int32_t> tail_f(fp.begin() + r.inserted_length / tree_.page_size(), fp.end());
    for (int32_t f : tail_f) map_.Clear(f);
    EXPECT_OK(full_.Free(tail_f));
    EXPECT_OK(tree_.CheckInvariants());
    return r;
  }
  int32_t Used() const { return full_.num_allocated(); }

  PageAllocator full_;
  PageAllocator swa_;
  SwaPageMap map_;
  RadixCache tree_;
};

std::vector<int32_t> Seq(int32_t from, int32_t n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

TEST(RadixCacheTest, MatchIsPageFlooredAndSplitsOnlyAtPageBoundaries) {
  Fixture f(/*page_size=*/4, /*window=*/0);
  auto r = f.Insert(Seq(0, 16));
  EXPECT_EQ(r.cached_length, 0);
  EXPECT_EQ(r.inserted_length, 16);
  // Diverges inside page 2 (token 10): only 2 pages match.
  std::vector<int32_t> q = Seq(0, 16);
  q[10] = 999;
  auto m = f.tree_.Match(q);
  EXPECT_EQ(m.length, 8);
  EXPECT_EQ(f.tree_.num_nodes(), 2);  // Split at token 8.
  EXPECT_OK(f.tree_.CheckInvariants());
  // A 7-token query matches only one page.
  EXPECT_EQ(f.tree_.Match(Seq(0, 7)).length, 4);
  auto r2 = f.Insert(q);
  EXPECT_EQ(r2.cached_length, 8);
  EXPECT_EQ(f.Used(), 4 + 2);
}

TEST(RadixCacheTest, LockedPrefixSurvivesEvictionAndLruOrderHolds) {
  Fixture f(1, 0);
  f.Insert(Seq(0, 8));
  f.Insert(Seq(100, 8));
  f.Insert(Seq(200, 8));
  auto m = f.tree_.Match(Seq(0, 8));  // 0.. is now most recent
  auto handle = f.tree_.Lock(m.node);
  EXPECT_EQ(f.tree_.protected_full_pages(), 8);
  EXPECT_EQ(f.tree_.EvictFull(8), 8);  // Evicts the LRU: 100..
  EXPECT_EQ(f.tree_.Match(Seq(100, 8)).length, 0);
  EXPECT_EQ(f.tree_.Match(Seq(200, 8)).length, 8);
  EXPECT_EQ(f.tree_.EvictFull(100), 8);  // Only 200.. is evictable.
  EXPECT_EQ(f.tree_.Match(Seq(0, 8)).length, 8);
  f.tree_.Unlock(handle);
  EXPECT_EQ(f.tree_.evictable_full_pages(), 8);
  EXPECT_EQ(f.tree_.EvictFull(100), 8);
  EXPECT_EQ(f.Used(), 0);
  EXPECT_OK(f.tree_.CheckInvariants());
}

TEST(RadixCacheTest, SwaEvictionTombstonesInternalNodesAndHitsNeedALiveWindow) {
  Fixture f(/*page_size=*/2, /*window=*/4);
  f.Insert(Seq(0, 8));
  f.Insert(Seq(0, 16));  // Node [0,8) becomes internal, [8,16) a leaf.
  auto lock = f.tree_.Lock(f.tree_.Match(Seq(0, 16)).node);
  // Window 4 tokens: only the leaf [8,16) is SWA locked.
  EXPECT_EQ(f.tree_.protected_swa_pages(), 4);
  EXPECT_EQ(f.tree_.EvictSwa(100), 4);  // Tombstones [0,8).
  EXPECT_EQ(f.tree_.total_swa_pages(), 4);
  EXPECT_EQ(f.tree_.total_full_pages(), 8);
  EXPECT_OK(f.tree_.CheckInvariants());
  // Prefix [0,8) alone is now invalid; [0,16) has 8 live tokens >= window.
  EXPECT_EQ(f.tree_.Match(Seq(0, 8)).length, 0);
  EXPECT_EQ(f.tree_.Match(Seq(0, 16)).length, 16);
  f.tree_.Unlock(lock);
  // Deleting the live leaf must take the tombstone parent with it.
  EXPECT_EQ(f.tree_.EvictSwa(100), 4);
  EXPECT_EQ(f.tree_.num_nodes(), 0);
  EXPECT_EQ(f.Used(), 0);
  EXPECT_EQ(f.swa_.num_allocated(), 0);
}

TEST(RadixCacheTest, InsertRevivesTombstonesAndStoresEvictedPrefixAsTombstone) {
  Fixture f(1, 2);
  // First 4 pages' SWA already freed by the request.
  auto r = f.Insert(Seq(0, 8), /*swa_evicted=*/4);
  EXPECT_EQ(r.inserted_length, 8);
  EXPECT_EQ(f.tree_.num_nodes(), 2);
  EXPECT_EQ(f.tree_.total_swa_pages(), 4);
  EXPECT_EQ(f.tree_.Match(Seq(0, 4)).length, 0);  // tombstone
  EXPECT_EQ(f.tree_.Match(Seq(0, 6)).length, 6);  // 2 live >= window
  // Insert the same with live SWA pages for all but the first 1: revives.
  auto r2 = f.Insert(Seq(0, 8), /*swa_evicted=*/1);
  EXPECT_EQ(r2.cached_length, 8);
  EXPECT_EQ(f.tree_.total_swa_pages(), 7);
  EXPECT_EQ(f.tree_.Match(Seq(0, 3)).length, 3);
  EXPECT_EQ(f.swa_.num_allocated(), 7);
  // A tombstone-only tail is not inserted (no tombstone leaf).
  auto r3 = f.Insert(Seq(50, 4), /*swa_evicted=*/4);
  EXPECT_EQ(r3.inserted_length, 0);
  EXPECT_EQ(f.Used(), 8);
}

TEST(RadixCacheTest, UnlockAfterSplitReleasesExactlyWhatWasLocked) {
  Fixture f(2, 6);
  f.Insert(Seq(0, 12));
  auto lock = f.tree_.Lock(f.tree_.Match(Seq(0, 12)).node);
  EXPECT_EQ(f.tree_.protected_full_pages(), 6);
  EXPECT_EQ(f.tree_.protected_swa_pages(), 6);
  EXPECT_EQ(f.tree_.Match(Seq(0, 4)).length, 4);  // Splits the locked node.
  EXPECT_EQ(f.tree_.Match(Seq(0, 8)).length, 8);
  EXPECT_EQ(f.tree_.num_nodes(), 3);
  f.tree_.Unlock(lock);
  EXPECT_EQ(f.tree_.protected_full_pages(), 0);
  EXPECT_EQ(f.tree_.protected_swa_pages(), 0);
  EXPECT_OK(f.tree_.CheckInvariants());
}

}  // namespace
}  // namespace colo::kvcache
