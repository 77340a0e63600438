#include "engine/scheduler/engine_state.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

TEST(EngineStateTest, PauseAndContinue) {
  EngineState s;
  EXPECT_STREQ(s.Name(), "serving");
  ASSERT_OK(s.Pause(PauseMode::kRetract));
  EXPECT_STREQ(s.Name(), "paused");
  EXPECT_EQ(s.paused_mode, PauseMode::kRetract);
  ASSERT_OK(s.Pause(PauseMode::kAbort));
  EXPECT_EQ(s.paused_mode, PauseMode::kAbort);
  ASSERT_OK(s.Continue());
  EXPECT_STREQ(s.Name(), "serving");
  EXPECT_FALSE(s.paused_mode.has_value());
}

TEST(EngineStateTest, NeedsWeightsRefusesContinue) {
  EngineState s;
  ASSERT_OK(s.Pause(PauseMode::kInPlace));
  s.needs_weights = true;
  EXPECT_STREQ(s.Name(), "needs_weights");
  EXPECT_THAT(s.Continue(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(s.run, RunState::kPaused);
  s.needs_weights = false;
  ASSERT_OK(s.Continue());
}

TEST(EngineStateTest, DescribeServingNeverSaysServingWhileMemoryIsReleased) {
  EngineState s;
  ServingStatus serving = DescribeServing(s, {});
  EXPECT_EQ(serving.state, "serving");
  EXPECT_TRUE(serving.can_generate);
  EXPECT_EQ(serving.reason, "");

  ServingStatus released = DescribeServing(s, {"kv_cache"});
  EXPECT_EQ(released.state, "released");
  EXPECT_FALSE(released.can_generate);
  EXPECT_NE(released.reason.find("kv_cache"), std::string::npos) << released.reason;

  ASSERT_OK(s.Pause(PauseMode::kRetract));
  ServingStatus paused = DescribeServing(s, {"weights", "kv_cache"});
  EXPECT_EQ(paused.state, "paused");
  EXPECT_FALSE(paused.can_generate);
  EXPECT_NE(paused.reason.find("retract"), std::string::npos) << paused.reason;
  EXPECT_NE(paused.reason.find("weights,kv_cache"), std::string::npos) << paused.reason;

  s.needs_weights = true;
  ServingStatus needs = DescribeServing(s, {"kv_cache"});
  EXPECT_EQ(needs.state, "needs_weights");
  EXPECT_FALSE(needs.can_generate);
}

}  // namespace
}  // namespace colo::engine
