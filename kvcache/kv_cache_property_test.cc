// Model-based randomized test: long random operation streams over many
// configurations, every invariant checked after every operation, zero leaks
// at the end. Fixed, printed seeds. KV_PROPERTY_OPS scales the op count
// (default: CI length, >= 10^6 operations over all configurations).
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kvcache/testing/op_driver.h"

namespace colo::kvcache::test_support {
namespace {

struct Case {
  int32_t page_size;
  int32_t window;  // 0 = no sliding layers
  bool sessions;
};

int64_t OpsPerCase() {
  const char* env = std::getenv("KV_PROPERTY_OPS");
#ifdef KV_PROPERTY_SANITIZER
  constexpr int64_t kDefault = 63000 / 8;
#else
  constexpr int64_t kDefault = 63000;  // x 16 configurations >= 10^6 ops
#endif
  return env != nullptr ? std::atoll(env) : kDefault;
}

class KvCachePropertyTest : public ::testing::TestWithParam<Case> {};

TEST_P(KvCachePropertyTest, RandomOpsKeepEveryInvariantAndLeakNothing) {
  const Case c = GetParam();
  DriverConfig config;
  config.page_size = c.page_size;
  config.sliding_window = c.window;
  config.sessions = c.sessions;
  config.full_capacity_tokens = std::max<int64_t>(256, 20LL * c.page_size);
  config.swa_capacity_tokens = std::max<int64_t>(192, 16LL * c.page_size);
  config.max_prompt = c.page_size >= 64 ? 160 : 96;
  int64_t total_ops = 0, total_hits = 0;
  for (uint64_t seed : {1u, 2u, 3u}) {
    const uint64_t full_seed = seed * 1000003u + c.page_size * 31u + c.window;
    SCOPED_TRACE(testing::Message() << "seed=" << full_seed << " " << config.Describe());
    std::printf("kv property: seed=%llu %s\n", static_cast<unsigned long long>(full_seed),
                config.Describe().c_str());
    auto driver = OpDriver::Create(config);
    ASSERT_TRUE(driver.ok()) << driver.status();
    PrngEntropy entropy(full_seed);
    const int64_t ops = OpsPerCase() / 3;
    for (int64_t i = 0; i < ops; ++i) {
      absl::Status s = (*driver)->Step(entropy);
      ASSERT_TRUE(s.ok()) << s;
    }
    absl::Status drained = (*driver)->Drain();
    ASSERT_TRUE(drained.ok()) << drained;
    const DriverStats& st = (*driver)->stats();
    std::printf("  ops=%lld hit_tokens=%lld/%lld exhausted=%lld releases=%lld\n",
                static_cast<long long>(st.ops), static_cast<long long>(st.hits_tokens),
                static_cast<long long>(st.prompt_tokens),
                static_cast<long long>(st.resource_exhausted),
                static_cast<long long>(st.releases));
    total_hits += st.hits_tokens;
    total_ops += st.ops;
  }
  EXPECT_GE(total_ops, OpsPerCase() - 3);
  EXPECT_GT(total_hits, 0) << "the stream never hit the cache: the test lost its power";
}

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int32_t p : {1, 4, 16, 64}) {
    cases.push_back({p, 0, true});
    cases.push_back({p, std::max(1, p / 2), true});   // window < page (1 for p=1)
    cases.push_back({p, p, false});                   // window == page
    cases.push_back({p, 3 * p + 5, true});            // window > page
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(
    Configs, KvCachePropertyTest, ::testing::ValuesIn(Cases()),
    [](const ::testing::TestParamInfo<Case>& info) {
      return "P" + std::to_string(info.param.page_size) + "_W" +
             std::to_string(info.param.window) + (info.param.sessions ? "_sessions" : "");
    });

}  // namespace
}  // namespace colo::kvcache::test_support
