// The CUDA attention kernels' index math and split/merge algebra, on the
// CPU: paged slot addressing, GQA head groups, window bounds, tile and split
// partitions (every visible key is covered exactly once), the online-softmax
// merge with and without sinks against a direct softmax, and the host
// planning (tiles, split counts, graph buckets). Runs in CI (no GPU).
#include "kernels/cuda/attention_plan.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"

namespace colo::kernels::cuda {
namespace {

TEST(AttentionPlanTest, SlotOfPositionFollowsThePageTable) {
  const std::vector<int32_t> pages = {7, 3, 12};
  const int32_t p = 4;
  EXPECT_EQ(SlotOfPosition(pages.data(), p, 0), 28);
  EXPECT_EQ(SlotOfPosition(pages.data(), p, 3), 31);
  EXPECT_EQ(SlotOfPosition(pages.data(), p, 4), 12);
  EXPECT_EQ(SlotOfPosition(pages.data(), p, 9), 49);
  // Page size 1: the page list is the slot list.
  EXPECT_EQ(SlotOfPosition(pages.data(), 1, 2), 12);
  // Same as the scheduler's req_to_token entries (page * P + offset).
  for (int32_t pos = 0; pos < 12; ++pos) {
    EXPECT_EQ(SlotOfPosition(pages.data(), p, pos), pages[pos / p] * p + pos % p);
  }
}

TEST(AttentionPlanTest, LayerSlotMapsSlidingLayersAndKeepsUnmapped) {
  const std::vector<int32_t> map = {-1, 5, 6, -1};
  EXPECT_EQ(LayerSlot(2, nullptr), 2);
  EXPECT_EQ(LayerSlot(1, map.data()), 5);
  EXPECT_EQ(LayerSlot(0, map.data()), -1);
  EXPECT_EQ(LayerSlot(-3, nullptr), -1);
}

TEST(AttentionPlanTest, KvHeadOfGroupsConsecutiveHeads) {
  EXPECT_EQ(KvHeadOf(0, 8, 2), 0);
  EXPECT_EQ(KvHeadOf(3, 8, 2), 0);
  EXPECT_EQ(KvHeadOf(4, 8, 2), 1);
  EXPECT_EQ(KvHeadOf(7, 8, 8), 7);
  EXPECT_EQ(KvHeadOf(31, 32, 1), 0);
}

TEST(AttentionPlanTest, WindowStartMatchesTheCpuKernel) {
  EXPECT_EQ(WindowStart(10, 0), 0);
  EXPECT_EQ(WindowStart(10, 4), 7);
  EXPECT_EQ(WindowStart(2, 4), 0);
  EXPECT_EQ(WindowStart(3, 4), 0);
  EXPECT_EQ(WindowStart(4, 4), 1);
  EXPECT_TRUE(KeyVisible(10, 7, 4));
  EXPECT_FALSE(KeyVisible(10, 6, 4));
  EXPECT_FALSE(KeyVisible(10, 11, 0));
  EXPECT_TRUE(KeyVisible(10, 0, 0));
}

TEST(AttentionPlanTest, RowLayoutCoversEveryHeadOnce) {
  for (int kv : {1, 2, 4, 8}) {
    for (int g : {1, 2, 3, 4, 6, 8, 16, 20, 32, 64}) {
      const int h = kv * g;
      const RowLayout l = MakeRowLayout(h, kv);
      EXPECT_LE(l.heads_per_block * l.tokens_per_block, kAttnRows) << h << "/" << kv;
      EXPECT_GE(l.tokens_per_block, 1);
      std::vector<int> seen(h, 0);
      for (int k = 0; k < kv; ++k) {
        for (int grp = 0; grp < l.head_groups; ++grp) {
          int first = -1, count = -1;
          HeadGroupOf(l, h, kv, k, grp, &first, &count);
          EXPECT_GT(count, 0);
          EXPECT_LE(count, l.heads_per_block);
          for (int i = first; i < first + count; ++i) {
            ASSERT_GE(i, 0);
            ASSERT_LT(i, h);
            EXPECT_EQ(KvHeadOf(i, h, kv), k) << "head " << i;
            ++seen[i];
          }
        }
      }
      for (int i = 0; i < h; ++i) EXPECT_EQ(seen[i], 1) << "head " << i << " of " << h;
    }
  }
}

TEST(AttentionPlanTest, SplitsPartitionTheKeyRangeInWholeTiles) {
  std::mt19937 rng(5);
  for (int trial = 0; trial < 2000; ++trial) {
    KeyRange r;
    r.begin = static_cast<int32_t>(rng() % 300);
    r.end = r.begin + static_cast<int32_t>(rng() % 5000);
    const int32_t splits = 1 + static_cast<int32_t>(rng() % kMaxDecodeSplits);
    int32_t next = r.begin;
    int32_t covered = 0;
    for (int32_t s = 0; s < splits; ++s) {
      const KeyRange part = SplitKeyRange(r, splits, s);
      ASSERT_LE(part.begin, part.end);
      if (part.size() == 0) continue;
      EXPECT_EQ(part.begin, next) << "gap or overlap at split " << s;
      EXPECT_EQ((part.begin - r.begin) % kAttnKeyTile, 0);
      next = part.end;
      covered += part.size();
    }
    EXPECT_EQ(covered, r.size());
    if (r.size() > 0) {
      EXPECT_EQ(next, r.end);
    }
  }
  KeyRange empty;
  empty.begin = empty.end = 9;
  EXPECT_EQ(SplitKeyRange(empty, 4, 2).size(), 0);
}

TEST(AttentionPlanTest, BlockKeyRangeCoversEveryVisibleKeyOfItsRows) {
  std::mt19937 rng(6);
  for (int trial = 0; trial < 500; ++trial) {
    const int32_t window = (rng() % 3 == 0) ? 0 : 1 + static_cast<int32_t>(rng() % 40);
    const int32_t first = static_cast<int32_t>(rng() % 200);
    const int32_t last = first + static_cast<int32_t>(rng() % 16);
    const KeyRange r = BlockKeyRange(first, last, window);
    for (int32_t q = first; q <= last; ++q) {
      for (int32_t k = 0; k <= last + 1; ++k) {
        if (KeyVisible(q, k, window)) {
          EXPECT_GE(k, r.begin);
          EXPECT_LT(k, r.end);
        }
      }
    }
    // Nothing below the first row's window start is loaded: the SWA cache
    // keeps exactly those keys mapped.
    EXPECT_EQ(r.begin, WindowStart(first, window));
  }
}

// Direct softmax attention of one row against split-K partials merged with
// MergePartials, on random scores, with and without a sink.
struct Partial {
  float m = -INFINITY;
  float l = 0.0f;
  std::vector<float> acc;
};

Partial Attend(const std::vector<float>& s, const std::vector<std::vector<float>>& v,
               KeyRange keys, int d) {
  Partial p;
  p.acc.assign(d, 0.0f);
  // Online softmax over key tiles, as the kernel does.
  for (int32_t t0 = keys.begin; t0 < keys.end; t0 += kAttnKeyTile) {
    const int32_t t1 = std::min(keys.end, t0 + kAttnKeyTile);
    float tile_max = -INFINITY;
    for (int32_t k = t0; k < t1; ++k) tile_max = std::max(tile_max, s[k]);
    const float m_new = std::max(p.m, tile_max);
    const float alpha = ScaledExp(p.m, m_new);
    p.l *= alpha;
    for (float& a : p.acc) a *= alpha;
    for (int32_t k = t0; k < t1; ++k) {
      const float e = ScaledExp(s[k], m_new);
      p.l += e;
      for (int i = 0; i < d; ++i) p.acc[i] += e * v[k][i];
    }
    p.m = m_new;
  }
  return p;
}

TEST(AttentionPlanTest, SplitMergeEqualsDirectSoftmax) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const int d = 8;
  for (int trial = 0; trial < 300; ++trial) {
    const int32_t n = static_cast<int32_t>(rng() % 700);
    std::vector<float> s(n);
    std::vector<std::vector<float>> v(n, std::vector<float>(d));
    for (int32_t k = 0; k < n; ++k) {
      s[k] = nd(rng);
      for (float& x : v[k]) x = nd(rng);
    }
    const bool has_sink = trial % 2 == 1;
    const float sink = nd(rng) + (trial % 4 == 3 ? 20.0f : 0.0f);
    // Direct.
    double mx = has_sink ? sink : -INFINITY;
    for (float x : s) mx = std::max<double>(mx, x);
    double denom = has_sink ? std::exp(sink - mx) : 0.0;
    std::vector<double> want(d, 0.0);
    for (int32_t k = 0; k < n; ++k) {
      const double e = std::exp(s[k] - mx);
      denom += e;
      for (int i = 0; i < d; ++i) want[i] += e * v[k][i];
    }
    for (double& w : want) w = denom > 0 ? w / denom : 0.0;
    // Split and merge.
    KeyRange all;
    all.begin = 0;
    all.end = n;
    const int32_t splits = 1 + static_cast<int32_t>(rng() % 12);
    std::vector<Partial> parts;
    std::vector<float> m, l;
    for (int32_t sp = 0; sp < splits; ++sp) {
      parts.push_back(Attend(s, v, SplitKeyRange(all, splits, sp), d));
      m.push_back(parts.back().m);
      l.push_back(parts.back().l);
    }
    const MergeScale ms = MergePartials(m.data(), l.data(), splits, 1, has_sink, sink);
    for (int i = 0; i < d; ++i) {
      float got = 0.0f;
      for (int32_t sp = 0; sp < splits; ++sp) got += parts[sp].acc[i] * MergeWeight(ms, m[sp]);
      EXPECT_NEAR(got, want[i], 1e-4 * (1 + std::fabs(want[i])))
          << "trial " << trial << " n=" << n << " splits=" << splits << " sink=" << has_sink;
      EXPECT_TRUE(std::isfinite(got));
    }
  }
}

TEST(AttentionPlanTest, MergeOfNothingIsZeroEvenWithASink) {
  const float m[2] = {-INFINITY, -INFINITY};
  const float l[2] = {0.0f, 0.0f};
  MergeScale none = MergePartials(m, l, 2, 1, false, 0.0f);
  EXPECT_EQ(none.denominator, 0.0f);
  EXPECT_EQ(MergeWeight(none, m[0]), 0.0f);
  MergeScale sink = MergePartials(m, l, 2, 1, true, 3.0f);
  EXPECT_EQ(sink.top, 3.0f);
  EXPECT_FLOAT_EQ(sink.denominator, 1.0f);
  EXPECT_EQ(MergeWeight(sink, m[1]), 0.0f);
}

TEST(AttentionPlanTest, MergeReadsStridedPartials) {
  // m/l of 3 splits interleaved with another row's (stride 2).
  const float m[6] = {1.0f, 9.0f, 2.0f, 9.0f, -INFINITY, 9.0f};
  const float l[6] = {2.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f};
  const MergeScale s = MergePartials(m, l, 3, 2, false, 0.0f);
  EXPECT_FLOAT_EQ(s.top, 2.0f);
  EXPECT_NEAR(s.denominator, 2.0f * std::exp(-1.0f) + 1.0f, 1e-6);
}

TEST(AttentionPlanTest, PlanPrefillTilesCoversMultiTokenRequestsOnly) {
  const std::vector<int32_t> begin = {0, 5, 6, 6, 16};
  const std::vector<int32_t> n = {5, 1, 0, 10, 1};
  const std::vector<PrefillTile> tiles = PlanPrefillTiles(begin, n, 4);
  std::set<int32_t> covered;
  for (const PrefillTile& t : tiles) {
    EXPECT_GT(t.num_tokens, 0);
    EXPECT_LE(t.num_tokens, 4);
    EXPECT_NE(n[t.req], 1);
    for (int32_t i = 0; i < t.num_tokens; ++i) {
      const int32_t tok = t.token_begin + i;
      EXPECT_GE(tok, begin[t.req]);
      EXPECT_LT(tok, begin[t.req] + n[t.req]);
      EXPECT_TRUE(covered.insert(tok).second) << "token " << tok << " twice";
    }
  }
  EXPECT_EQ(covered.size(), 15u);  // 5 + 10
  EXPECT_EQ(DecodeRequests(n), (std::vector<int32_t>{1, 4}));
}

TEST(AttentionPlanTest, ChooseDecodeSplits) {
  EXPECT_EQ(ChooseDecodeSplits(512, 100000, 132), 1);  // enough blocks
  EXPECT_EQ(ChooseDecodeSplits(8, 100000, 132), 32);   // 264 / 8 -> 33, capped
  EXPECT_EQ(ChooseDecodeSplits(8, 100, 132), 1);       // 100 keys: 1 split of 2 tiles
  EXPECT_EQ(ChooseDecodeSplits(8, 1024, 132), 16);     // 1024 / 64
  EXPECT_EQ(ChooseDecodeSplits(100, 100000, 132), 3);
  EXPECT_EQ(ChooseDecodeSplits(0, 10, 132), 1);
}

TEST(AttentionPlanTest, GraphBuckets) {
  EXPECT_EQ(DecodeGraphBuckets(1), (std::vector<int32_t>{1}));
  EXPECT_EQ(DecodeGraphBuckets(3), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(DecodeGraphBuckets(20), (std::vector<int32_t>{1, 2, 4, 8, 16, 20}));
  const std::vector<int32_t> b = DecodeGraphBuckets(256);
  EXPECT_EQ(b.front(), 1);
  EXPECT_EQ(b.back(), 256);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
  EXPECT_EQ(std::adjacent_find(b.begin(), b.end()), b.end());
  EXPECT_EQ(BucketFor(1, b), 1);
  EXPECT_EQ(BucketFor(5, b), 8);
  EXPECT_EQ(BucketFor(65, b), 80);
  EXPECT_EQ(BucketFor(257, b), -1);
  EXPECT_TRUE(DecodeGraphBuckets(0).empty());
}

TEST(AttentionPlanTest, PagedBatchSlots) {
  // Two requests: r0 pages {3, 1}, r1 pages {5}; page size 4.
  const std::vector<int32_t> positions = {0, 5, 2};
  const std::vector<int32_t> token_req = {0, 0, 1};
  const std::vector<int32_t> begin = {0, 2, 3};
  const std::vector<int32_t> pages = {3, 1, 5};
  PagedBatch b;
  b.num_tokens = 3;
  b.positions = positions.data();
  b.token_req = token_req.data();
  b.req_page_begin = begin.data();
  b.pages = pages.data();
  b.page_size = 4;
  EXPECT_EQ(TokenSlot(b, 0), 12);
  EXPECT_EQ(TokenSlot(b, 1), 5);
  EXPECT_EQ(TokenSlot(b, 2), 22);
  EXPECT_EQ(RequestSlot(b, 0, 3), 15);
  std::vector<int32_t> map(32, -1);
  map[12] = 4;
  b.full_to_swa = map.data();
  EXPECT_EQ(TokenSlot(b, 0), 4);
  EXPECT_EQ(TokenSlot(b, 1), -1);  // unmapped: the kernels skip it
}

TEST(AttentionPlanTest, SmemAndWorkspaceSizes) {
  EXPECT_EQ(AttentionSmemBytes(64), (16 * 64 + 32 * 65 + 32 * 64) * 4 + 32 * 4);
  EXPECT_LE(AttentionSmemBytes(128), 48u * 1024);  // no opt-in needed up to 128
  EXPECT_GT(AttentionSmemBytes(256), 48u * 1024);
  EXPECT_LE(AttentionSmemBytes(kAttnMaxHeadDim), 227u * 1024);  // Hopper's limit
  EXPECT_EQ(DecodeWorkspaceFloats(4, 1, 8, 64), 0u);
  EXPECT_EQ(DecodeWorkspaceFloats(4, 3, 8, 64), 4u * 8 * 3 * 66);
  // The maximum covers every batch size's choice.
  const size_t most = MaxDecodeWorkspaceFloats(64, 32, 8, 128, 132);
  for (int32_t items = 1; items <= 64; ++items) {
    const int32_t s = ChooseDecodeSplits(int64_t{items} * 8, 1 << 20, 132);
    EXPECT_LE(DecodeWorkspaceFloats(items, s, 32, 128), most) << items;
  }
  EXPECT_GT(most, 0u);
}

TEST(AttentionPlanTest, PageCount) {
  EXPECT_EQ(PageCount(0, 16), 0);
  EXPECT_EQ(PageCount(1, 16), 1);
  EXPECT_EQ(PageCount(16, 16), 1);
  EXPECT_EQ(PageCount(17, 16), 2);
  EXPECT_EQ(PageCount(5, 1), 5);
}

}  // namespace
}  // namespace colo::kernels::cuda
