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

}  // namespace
}  // namespace colo::engine
