// Differential tests on the same request stream:
// - page_size P vs 1: hits equal up to page flooring (no eviction);
// - SWA-aware tree vs full-attention tree: SWA hit <= full hit, and equal when
//   the window covers every sequence (nothing leaves the window).
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kvcache/kv_cache_manager.h"
#include "kvcache/testing/test_pool.h"
#include "tests/util/status_matchers.h"

namespace colo::kvcache {
namespace {

using ::colo::kvcache::test_support::TestPool;

struct Cache {
  std::unique_ptr<TestPool> pool;
  std::unique_ptr<KvCacheManager> m;
};

Cache Make(int32_t page_size, int32_t window, int64_t swa_tokens = 1 << 16) {
  Cache c;
  auto pool = TestPool::Create();
  EXPECT_TRUE(pool.ok());
  c.pool = *std::move(pool);
  KvCacheManager::Options o;
  o.page_size = page_size;
  o.num_layers = 2;
  if (window > 0) o.layer_is_sliding = {true, false};
  o.sliding_window = window;
  o.kv_heads = 1;
  o.head_dim = 1;
  o.full_capacity_tokens = 1 << 16;  // No eviction.
  o.swa_capacity_tokens = swa_tokens;
  o.max_requests = 4;
  o.max_context_tokens = 512;
  auto m = KvCacheManager::Create(o, c.pool->pool());
  EXPECT_TRUE(m.ok()) << m.status();
  c.m = *std::move(m);
  return c;
}

// Runs one request to completion; returns its cache hit.
int32_t RunToEnd(KvCacheManager& m, const std::vector<int32_t>& prompt,
            const std::vector<int32_t>& output) {
  auto r = m.BeginRequest(prompt, {});
  EXPECT_TRUE(r.ok()) << r.status();
  std::vector<int32_t> rest(prompt.begin() + r->cached_len, prompt.end());
  EXPECT_OK(m.Allocate(r->id, rest));
  EXPECT_OK(m.Commit(r->id, static_cast<int32_t>(prompt.size())));
  int32_t len = static_cast<int32_t>(prompt.size());
  for (int32_t t : output) {
    EXPECT_OK(m.Allocate(r->id, {t}));
    EXPECT_OK(m.Commit(r->id, ++len));
  }
  EXPECT_OK(m.ReleaseRequest(r->id, {.cache = true}));
  return r->cached_len;
}

struct Item {
  std::vector<int32_t> prompt, output;
};

std::vector<Item> Stream(uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int32_t>> stems(8);
  for (auto& s : stems) {
    s.resize(40 + rng() % 120);
    for (auto& t : s) t = static_cast<int32_t>(rng() % 3);
  }
  std::vector<Item> items;
  for (int i = 0; i < n; ++i) {
    Item it;
    const auto& stem = stems[rng() % stems.size()];
    it.prompt.assign(stem.begin(), stem.begin() + rng() % stem.size());
    const int extra = 1 + rng() % 40;
    for (int j = 0; j < extra; ++j) it.prompt.push_back(static_cast<int32_t>(rng() % 3));
    const int out = rng() % 30;
    for (int j = 0; j < out; ++j) it.output.push_back(static_cast<int32_t>(rng() % 3));
    items.push_back(std::move(it));
  }
  return items;
}

TEST(KvCacheDifferentialTest, PagedHitsEqualUnpagedHitsFloored) {
  for (int32_t p : {4, 16, 64}) {
    const uint64_t seed = 42 + p;
    std::printf("paged vs unpaged: seed=%llu page_size=%d\n",
                static_cast<unsigned long long>(seed), p);
    Cache one = Make(1, 0), paged = Make(p, 0);
    int64_t hit1 = 0, hitp = 0;
    for (const Item& it : Stream(seed, 400)) {
      const int32_t h1 = RunToEnd(*one.m, it.prompt, it.output);
      const int32_t hp = RunToEnd(*paged.m, it.prompt, it.output);
      ASSERT_EQ(hp, h1 / p * p) << "page_size " << p;
      hit1 += h1;
      hitp += hp;
    }
    std::printf("  hit tokens: page_size=1 %lld, page_size=%d %lld\n",
                static_cast<long long>(hit1), p, static_cast<long long>(hitp));
    EXPECT_GT(hitp, 0);
    EXPECT_OK(one.m->Audit());
    EXPECT_OK(paged.m->Audit());
  }
}

TEST(KvCacheDifferentialTest, SwaHitsNeverExceedFullHits) {
  for (int32_t p : {1, 4, 16}) {
    for (int32_t window : {p / 2 + 1, p, 3 * p + 1}) {
      const uint64_t seed = 7 * p + window;
      std::printf("swa vs full: seed=%llu page_size=%d window=%d\n",
                  static_cast<unsigned long long>(seed), p, window);
      Cache full = Make(p, 0), swa = Make(p, window, /*swa_tokens=*/64 * p + 256);
      int64_t hf = 0, hs = 0;
      for (const Item& it : Stream(seed, 300)) {
        const int32_t f = RunToEnd(*full.m, it.prompt, it.output);
        const int32_t s = RunToEnd(*swa.m, it.prompt, it.output);
        ASSERT_LE(s, f);
        hf += f;
        hs += s;
      }
      std::printf("  hit tokens: full %lld, swa %lld\n", static_cast<long long>(hf),
                  static_cast<long long>(hs));
      EXPECT_OK(swa.m->Audit());
    }
  }
}

TEST(KvCacheDifferentialTest, SwaEqualsFullWhenNothingLeavesTheWindow) {
  const uint64_t seed = 99;
  std::printf("swa(window=1024) vs full: seed=%llu page_size=4\n",
              static_cast<unsigned long long>(seed));
  Cache full = Make(4, 0), swa = Make(4, 1024);
  for (const Item& it : Stream(seed, 300)) {
    ASSERT_EQ(RunToEnd(*swa.m, it.prompt, it.output), RunToEnd(*full.m, it.prompt, it.output));
  }
}

}  // namespace
}  // namespace colo::kvcache
