#include "kvcache/kv_cache_manager.h"

#include <memory>
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvcache/testing/test_pool.h"
#include "tests/util/status_matchers.h"

namespace colo::kvcache {
namespace {

using ::colo::kvcache::test_support::TestPool;
using ::testing::HasSubstr;

std::vector<int32_t> Seq(int32_t from, int32_t n) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), from);
  return v;
}

class KvCacheManagerTest : public ::testing::Test {
 protected:
  void Make(KvCacheManager::Options o) {
    auto pool = TestPool::Create();
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = *std::move(pool);
    o.audit_every_op = true;
    auto m = KvCacheManager::Create(o, pool_->pool());
    ASSERT_TRUE(m.ok()) << m.status();
    m_ = *std::move(m);
  }
  static KvCacheManager::Options Swa(int32_t page_size, int32_t window) {
    KvCacheManager::Options o;
    o.page_size = page_size;
    o.num_layers = 4;
    o.layer_is_sliding = {true, false, true, true};
    o.sliding_window = window;
    o.kv_heads = 2;
    o.head_dim = 8;
    o.full_capacity_tokens = 512;
    o.swa_capacity_tokens = 256;
    o.max_requests = 8;
    return o;
  }
  static KvCacheManager::Options Full(int32_t page_size) {
    KvCacheManager::Options o = Swa(page_size, 0);
    o.layer_is_sliding.clear();
    return o;
  }
  // Runs a whole request: prefill `prompt`, decode `decode` tokens, finish.
  void RunRequest(const std::vector<int32_t>& prompt, int decode, bool cache = true,
                  std::optional<SessionId> session = std::nullopt) {
    ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(prompt, {.session_id = session}));
    std::vector<int32_t> rest(prompt.begin() + r.cached_len, prompt.end());
    ASSERT_OK(m_->Allocate(r.id, rest));
    ASSERT_OK(m_->Commit(r.id, static_cast<int32_t>(prompt.size())));
    for (int i = 0; i < decode; ++i) {
      ASSERT_OK(m_->Allocate(r.id, {7000 + i}));
      ASSERT_OK(m_->Commit(r.id, static_cast<int32_t>(prompt.size()) + i + 1));
    }
    ASSERT_OK(m_->ReleaseRequest(r.id, {.cache = cache}));
  }
  void ExpectAllFree() {
    KvUsage u = m_->Usage();
    EXPECT_EQ(u.full.free, u.full.capacity);
    EXPECT_EQ(u.swa.free, u.swa.capacity);
    EXPECT_EQ(u.rows.free, u.rows.capacity);
    EXPECT_OK(m_->Audit());
  }

  std::unique_ptr<TestPool> pool_;
  std::unique_ptr<KvCacheManager> m_;
};

TEST_F(KvCacheManagerTest, RejectsInconsistentOptions) {
  auto pool = TestPool::Create();
  ASSERT_TRUE(pool.ok());
  KvCacheManager::Options o = Swa(4, 0);  // sliding layers without a window
  EXPECT_THAT(KvCacheManager::Create(o, (*pool)->pool()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sliding_window")));
  o = Full(4);
  o.layer_is_sliding = {false};
  EXPECT_THAT(KvCacheManager::Create(o, (*pool)->pool()).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(KvCacheManagerTest, FinishedPrefixIsReusedPageAligned) {
  Make(Full(4));
  RunRequest(Seq(0, 30), 5);
  // 35 committed tokens -> 32 (8 pages) cached; the tail page was freed.
  KvUsage u = m_->Usage();
  EXPECT_EQ(u.full.evictable, 8);
  EXPECT_EQ(u.full.in_flight, 0);
  std::vector<int32_t> again = Seq(0, 30);
  again.push_back(5);  // diverges at position 30
  ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(again, {}));
  EXPECT_EQ(r.cached_len, 28);  // floor_4(30)
  // The hit is locked: protected, not evictable.
  EXPECT_EQ(m_->Usage().full.protected_pages, 7);
  EXPECT_OK(m_->ReleaseRequest(r.id, {.cache = false}));
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

TEST_F(KvCacheManagerTest, LayoutContractSlotsAndPaddingRow) {
  Make(Swa(4, 8));
  ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(Seq(0, 10), {}));
  ASSERT_OK(m_->Allocate(r.id, Seq(0, 10)));
  const KvSeq* seq = m_->FindRequest(r.id);
  const int32_t* row = m_->req_to_token() + int64_t{r.row} * m_->max_context_tokens();
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(row[i], seq->full_pages[i / 4] * 4 + i % 4);
    EXPECT_NE(row[i] / 4, kPaddingPage);
    EXPECT_GE(m_->full_to_swa()[row[i]], 4) << "mapped to a non-padding SWA slot";
    EXPECT_EQ(m_->full_to_swa()[row[i]] % 4, i % 4);
  }
  for (int i = 0; i < m_->max_context_tokens(); ++i) ASSERT_EQ(m_->req_to_token()[i], 0);
  LayerKv l0 = m_->GetLayerKv(0), l1 = m_->GetLayerKv(1);
  EXPECT_TRUE(l0.sliding);
  EXPECT_FALSE(l1.sliding);
  EXPECT_EQ(l0.num_slots, (256 / 4 + 1) * 4);
  EXPECT_EQ(l1.num_slots, (512 / 4 + 1) * 4);
  EXPECT_EQ(l1.SlotElements(), 16);
  l1.KFloat()[(l1.num_slots - 1) * 16 + 15] = 1.0f;  // Last element is writable.
  EXPECT_OK(m_->ReleaseRequest(r.id, {.cache = false}));
  ExpectAllFree();
}

TEST_F(KvCacheManagerTest, SwaSlotsOutsideTheWindowAreFreedPageAligned) {
  Make(Swa(4, 8));
  ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(Seq(0, 40), {}));
  ASSERT_OK(m_->Allocate(r.id, Seq(0, 40)));
  EXPECT_EQ(m_->Usage().swa.in_flight, 10);
  ASSERT_OK(m_->Commit(r.id, 40));
  // Frontier floor_4(40 - max(8,4) - 4) = 28: 7 SWA pages freed.
  const KvSeq* seq = m_->FindRequest(r.id);
  EXPECT_EQ(seq->swa_evicted_len, 28);
  EXPECT_EQ(m_->Usage().swa.in_flight, 3);
  EXPECT_EQ(m_->Usage().full.in_flight, 10);
  const int32_t* row = m_->req_to_token() + int64_t{r.row} * m_->max_context_tokens();
  for (int i = 0; i < 28; ++i) EXPECT_EQ(m_->full_to_swa()[row[i]], kNoSwaSlot) << i;
  for (int i = 28; i < 40; ++i) EXPECT_NE(m_->full_to_swa()[row[i]], kNoSwaSlot) << i;
  ASSERT_OK(m_->ReleaseRequest(r.id, {.cache = true}));
  // The tree holds 10 full pages; the evicted prefix is a tombstone.
  EXPECT_EQ(m_->Usage().full.evictable, 10);
  EXPECT_EQ(m_->Usage().swa.evictable, 3);
  // A query ending inside the tombstone is no hit; one with a live window is.
  EXPECT_EQ(m_->MatchPrefixLength(Seq(0, 20)), 0);
  EXPECT_EQ(m_->MatchPrefixLength(Seq(0, 40)), 40);
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

// Regression (miles #860 / sglang #24661): releasing kv_cache must release the
// SWA pool too; resuming brings both back and the cache starts empty.
TEST_F(KvCacheManagerTest, ReleaseKvCacheReleasesBothPoolsAndResumeResetsThem) {
  Make(Swa(4, 8));
  const int64_t full_bytes = int64_t{(512 / 4 + 1) * 4} * 2 * 8 * 4 * 2;  // slots*heads*dim*4B*(K,V)
  const int64_t swa_bytes = int64_t{(256 / 4 + 1) * 4} * 2 * 8 * 4 * 2;
  EXPECT_EQ(m_->DeviceBytes(), full_bytes + swa_bytes * 3 + m_->storage().table_bytes());
  ASSERT_OK(m_->OpenSession(1));
  RunRequest(Seq(0, 30), 3, true, SessionId{1});
  RunRequest(Seq(100, 20), 3);
  engine::TagInfo before = pool_->KvInfo();
  // The SWA pool's K/V are part of the kv_cache tag, next to the full pool's.
  EXPECT_EQ(m_->storage().swa_pool_bytes(), swa_bytes * 3);
  EXPECT_EQ(m_->storage().full_pool_bytes(), full_bytes);
  EXPECT_GE(before.reserved_bytes, static_cast<uint64_t>(m_->DeviceBytes()));
  EXPECT_GE(before.resident_bytes, static_cast<uint64_t>(m_->DeviceBytes()));
  // Not allowed while a request runs.
  ASSERT_OK_AND_ASSIGN(auto busy, m_->BeginRequest(Seq(500, 5), {}));
  EXPECT_THAT(m_->ResetForRelease(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(m_->Flush(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(m_->ReleaseRequest(busy.id, {.cache = false}));

  ASSERT_OK(m_->ResetForRelease());
  ASSERT_OK(pool_->pool()->Release({engine::MemoryTag::kKvCache}).status());
  engine::TagInfo after = pool_->KvInfo();
  EXPECT_EQ(after.resident_bytes, 0u) << "some KV pool escaped the kv_cache tag";
  EXPECT_EQ(after.reserved_bytes, before.reserved_bytes);
  EXPECT_THAT(m_->BeginRequest(Seq(0, 5), {}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("released")));
  EXPECT_THAT(m_->OnResumed(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(pool_->pool()->Resume({engine::MemoryTag::kKvCache}).status());
  EXPECT_EQ(pool_->KvInfo().resident_bytes, before.resident_bytes);
  ASSERT_OK(m_->OnResumed());
  KvUsage u = m_->Usage();
  EXPECT_EQ(u.full.free, u.full.capacity);
  EXPECT_EQ(u.swa.free, u.swa.capacity);
  EXPECT_EQ(u.rows.sessions, 1);  // The session survives, empty.
  EXPECT_EQ(m_->MatchPrefixLength(Seq(100, 20)), 0);
  // It serves again: the session restarts from scratch.
  RunRequest(Seq(0, 12), 2, true, SessionId{1});
  ASSERT_OK(m_->CloseSession(1));
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

// Regression (sglang #20070): with page_size 4 on an SWA model the session's
// protected length must be page aligned even when a turn commits an
// unaligned length; session_held is counted in whole pages; no leak on close.
TEST_F(KvCacheManagerTest, SessionProtectedLengthIsPageAlignedOnSwaModel) {
  Make(Swa(4, 6));
  ASSERT_OK(m_->OpenSession(7));
  std::vector<int32_t> history = Seq(0, 13);
  RunRequest(history, 4, true, SessionId{7});  // committed 17 (unaligned)
  const KvSeq* s = m_->FindSession(7);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->committed_len, 17);
  EXPECT_EQ(s->protected_len, 16);
  EXPECT_EQ(s->protected_len % 4, 0);
  EXPECT_EQ(m_->Usage().full.session_held, 1);  // ceil(17/4) - 16/4
  EXPECT_EQ(m_->Usage().full.protected_pages, 4);
  for (int turn = 0; turn < 6; ++turn) {
    std::vector<int32_t> prompt(s->tokens.begin(), s->tokens.begin() + s->committed_len);
    for (int i = 0; i < 3 + turn; ++i) prompt.push_back(900 + turn * 10 + i);
    ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(prompt, {.session_id = SessionId{7}}));
    EXPECT_EQ(r.cached_len, s->committed_len);
    std::vector<int32_t> rest(prompt.begin() + r.cached_len, prompt.end());
    ASSERT_OK(m_->Allocate(r.id, rest));
    ASSERT_OK(m_->Commit(r.id, static_cast<int32_t>(prompt.size())));
    ASSERT_OK(m_->Allocate(r.id, {1, 2, 3}));  // speculative over-allocation
    ASSERT_OK(m_->Commit(r.id, static_cast<int32_t>(prompt.size()) + 1));
    ASSERT_OK(m_->ReleaseRequest(r.id, {.cache = true}));
    s = m_->FindSession(7);
    EXPECT_EQ(s->protected_len, 16);
    EXPECT_EQ(s->allocated_len, s->committed_len);
    EXPECT_EQ(m_->Usage().full.session_held, (s->committed_len + 3) / 4 - 4);
    EXPECT_OK(m_->Audit());
  }
  // A turn that does not extend the history is rejected without side effects.
  EXPECT_THAT(m_->BeginRequest(Seq(50, 30), {.session_id = SessionId{7}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("extend")));
  EXPECT_THAT(m_->BeginRequest(Seq(0, 3), {.session_id = SessionId{99}}).status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(m_->CloseSession(99), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(m_->CloseSession(7));
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

TEST_F(KvCacheManagerTest, AbortedSessionTurnRollsBackAndIdleSessionsTimeOut) {
  Make(Swa(4, 4));
  ASSERT_OK(m_->OpenSession(1));
  ASSERT_OK(m_->OpenSession(2));
  RunRequest(Seq(0, 10), 1, true, SessionId{1});
  const int64_t held = m_->Usage().full.session_held;
  std::vector<int32_t> prompt = Seq(0, 10);
  prompt.push_back(7000);
  prompt.push_back(1);
  ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(prompt, {.session_id = SessionId{1}}));
  EXPECT_THAT(m_->CloseSession(1), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(m_->Allocate(r.id, Seq(300, 9)));
  ASSERT_OK(m_->ReleaseRequest(r.id, {.cache = false}));
  EXPECT_EQ(m_->FindSession(1)->committed_len, 11);
  EXPECT_EQ(m_->Usage().full.session_held, held);
  EXPECT_EQ(m_->CloseIdleSessions(absl::Now() + absl::Hours(1), absl::Minutes(5)), 2);
  EXPECT_EQ(m_->num_sessions(), 0);
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

TEST_F(KvCacheManagerTest, BadInputFailsWithNumbersAndLeaksNothing) {
  KvCacheManager::Options o = Full(4);
  o.full_capacity_tokens = 64;
  o.max_requests = 2;
  o.max_context_tokens = 0;  // = capacity
  Make(o);
  EXPECT_THAT(m_->BeginRequest(Seq(0, 65), {}).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("65 tokens")));
  EXPECT_THAT(m_->BeginRequest({}, {}).status(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(m_->Allocate(12345, {1}), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(m_->Commit(12345, 1), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(m_->ReleaseRequest(12345, {}), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK_AND_ASSIGN(auto a, m_->BeginRequest(Seq(0, 40), {}));
  ASSERT_OK_AND_ASSIGN(auto b, m_->BeginRequest(Seq(100, 40), {}));
  EXPECT_THAT(m_->BeginRequest(Seq(200, 4), {}).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("row")));
  ASSERT_OK(m_->Allocate(a.id, Seq(0, 40)));
  EXPECT_EQ(m_->AvailableTokens(), 6 * 4);
  // 10 of 16 pages used; b needs 10 more: exhausted, nothing changes.
  EXPECT_THAT(m_->Allocate(b.id, Seq(100, 40)),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("need 10 pages (40 tokens), 6 free")));
  EXPECT_EQ(m_->FindRequest(b.id)->allocated_len, 0);
  EXPECT_THAT(m_->Commit(a.id, 41), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_OK(m_->Audit());
  ASSERT_OK(m_->Commit(a.id, 40));
  ASSERT_OK(m_->ReleaseRequest(a.id, {.cache = true}));
  EXPECT_EQ(m_->AvailableTokens(), 16 * 4);  // a's 10 pages are evictable
  // Now b fits by evicting a's cached prefix.
  ASSERT_OK(m_->Allocate(b.id, Seq(100, 40)));
  ASSERT_OK(m_->ReleaseRequest(b.id, {.cache = false}));
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

TEST_F(KvCacheManagerTest, InsertPrefixSharesRunningRequestsKv) {
  Make(Swa(16, 16));
  std::vector<int32_t> prompt = Seq(0, 100);
  ASSERT_OK_AND_ASSIGN(auto a, m_->BeginRequest(prompt, {}));
  ASSERT_OK(m_->Allocate(a.id, prompt));
  ASSERT_OK(m_->Commit(a.id, 100));
  ASSERT_OK(m_->InsertPrefix(a.id));
  EXPECT_EQ(m_->FindRequest(a.id)->protected_len, 96);
  ASSERT_OK_AND_ASSIGN(auto b, m_->BeginRequest(prompt, {}));
  EXPECT_EQ(b.cached_len, 96);
  ASSERT_OK(m_->ReleaseRequest(a.id, {.cache = true}));
  ASSERT_OK(m_->ReleaseRequest(b.id, {.cache = true}));
  ASSERT_OK(m_->Flush());
  ExpectAllFree();
}

}  // namespace
}  // namespace colo::kvcache
