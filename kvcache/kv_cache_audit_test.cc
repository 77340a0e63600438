// The accounting checker must fail, naming the pool and the counts, when the
// bookkeeping is corrupted the way real bugs corrupted it: a leaked page, a
// page with two owners (double free / stale reference), and the unaligned
// session protected length of sglang #20070.
#include <numeric>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvcache/kv_cache_manager.h"
#include "kvcache/testing/test_pool.h"
#include "tests/util/status_matchers.h"

namespace colo::kvcache {

class KvCacheManagerTestPeer {
 public:
  static PageAllocator& full(KvCacheManager& m) { return m.full_alloc_; }
  static KvSeq& session(KvCacheManager& m, SessionId id) { return *m.sessions_.at(id).seq; }
};

namespace {

using ::colo::kvcache::test_support::TestPool;
using ::testing::HasSubstr;

class KvCacheAuditTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pool = TestPool::Create();
    ASSERT_TRUE(pool.ok());
    pool_ = *std::move(pool);
    KvCacheManager::Options o;
    o.page_size = 4;
    o.num_layers = 2;
    o.layer_is_sliding = {true, false};
    o.sliding_window = 8;
    o.kv_heads = 1;
    o.head_dim = 4;
    o.full_capacity_tokens = 128;
    o.swa_capacity_tokens = 64;
    o.max_requests = 4;
    auto m = KvCacheManager::Create(o, pool_->pool());
    ASSERT_TRUE(m.ok());
    m_ = *std::move(m);
  }
  std::unique_ptr<TestPool> pool_;
  std::unique_ptr<KvCacheManager> m_;
};

TEST_F(KvCacheAuditTest, LeakedPageIsNamed) {
  ASSERT_OK(m_->Audit());
  std::vector<int32_t> leaked;
  ASSERT_OK(KvCacheManagerTestPeer::full(*m_).Allocate(1, &leaked));
  EXPECT_THAT(m_->CheckConservation(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("pool 'full': free 31 + evictable 0 + protected 0 + "
                                 "session_held 0 + in_flight 0 = 31 != capacity 32 pages "
                                 "(1 leaked)")));
  EXPECT_THAT(m_->Audit(), StatusIs(absl::StatusCode::kInternal,
                                    HasSubstr(absl::StrCat("leaked pages [", leaked[0], "]"))));
}

TEST_F(KvCacheAuditTest, PageOwnedByARequestAndTheFreeListIsCaught) {
  std::vector<int32_t> prompt(10);
  std::iota(prompt.begin(), prompt.end(), 0);
  ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(prompt, {}));
  ASSERT_OK(m_->Allocate(r.id, prompt));
  const int32_t page = m_->FindRequest(r.id)->full_pages[1];
  ASSERT_OK(KvCacheManagerTestPeer::full(*m_).Free({page}));  // a double free
  EXPECT_THAT(m_->Audit(), StatusIs(absl::StatusCode::kInternal, HasSubstr("pool 'full'")));
}

TEST_F(KvCacheAuditTest, UnalignedSessionProtectedLengthIsCaught) {
  ASSERT_OK(m_->OpenSession(1));
  std::vector<int32_t> prompt(13);
  std::iota(prompt.begin(), prompt.end(), 0);
  ASSERT_OK_AND_ASSIGN(auto r, m_->BeginRequest(prompt, {.session_id = SessionId{1}}));
  ASSERT_OK(m_->Allocate(r.id, prompt));
  ASSERT_OK(m_->Commit(r.id, 13));
  ASSERT_OK(m_->ReleaseRequest(r.id, {.cache = true}));
  ASSERT_OK(m_->Audit());
  KvSeq& s = KvCacheManagerTestPeer::session(*m_, 1);
  EXPECT_EQ(s.protected_len, 12);
  s.protected_len = s.committed_len;  // The sglang #20070 bug.
  EXPECT_THAT(m_->Audit(), StatusIs(absl::StatusCode::kInternal,
                                    HasSubstr("protected length not page aligned")));
  s.protected_len = 12;
  EXPECT_OK(m_->Audit());
}

}  // namespace
}  // namespace colo::kvcache
