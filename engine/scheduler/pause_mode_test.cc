#include "engine/scheduler/pause_mode.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

using ::testing::HasSubstr;

TEST(PauseModeTest, RoundTripsEveryMode) {
  for (PauseMode mode : {PauseMode::kAbort, PauseMode::kRetract, PauseMode::kInPlace}) {
    ASSERT_OK_AND_ASSIGN(PauseMode parsed, ParsePauseMode(PauseModeName(mode)));
    EXPECT_EQ(parsed, mode);
  }
}

TEST(PauseModeTest, UnknownModeIsInvalidArgumentNamingChoices) {
  EXPECT_THAT(ParsePauseMode("foo"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("in_place")));
  EXPECT_THAT(ParsePauseMode(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePauseMode("ABORT"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::engine
