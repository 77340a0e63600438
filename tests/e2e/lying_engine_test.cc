// Release verification against a real lying engine: engine 1 runs with the
// test-only --debug_skip_release_tag=kv_cache (its release reports success
// but keeps the KV cache's memory). PrepareTraining must fail, the node must
// go FAILED, and the reason must name the engine and the kv_cache tag.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(LyingEngineTest, PrepareTrainingFailsNamingKvCache) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.per_engine_flags = {{}, {"--debug_skip_release_tag=kv_cache"}};
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(node->TrainerOptions()));
  ASSERT_OK(trainer->Rollout().status());

  const std::string liar = node->engine_address(1);
  EXPECT_THAT(trainer->PrepareTraining(1),
              StatusIs(absl::StatusCode::kAborted,
                       AllOf(HasSubstr("release verification failed on engine " + liar),
                             HasSubstr("kv_cache"), Not(HasSubstr(node->engine_address(0))))));
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::FAILED);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr(liar), HasSubstr("bytes match tag kv_cache")));
  std::printf("FAILED reason: %s\n", state.reason().c_str());
  // The trainer cannot go on: the next transition names the FAILED phase.
  EXPECT_THAT(trainer->BeginWeightSync(1),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("FAILED")));
}

}  // namespace
}  // namespace colo::test_util
