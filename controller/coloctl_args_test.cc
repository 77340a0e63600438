#include "controller/coloctl_args.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ColoctlArgsTest, ParsesCommandsAndFlags) {
  ASSERT_OK_AND_ASSIGN(auto args,
                       ParseColoctlArgs({"--controller=h:1", "release", "--tags=weights,kv_cache",
                                         "--output", "json", "--timeout=5s"}));
  EXPECT_EQ(args.command, "release");
  EXPECT_EQ(args.controller, "h:1");
  EXPECT_THAT(args.tags, ElementsAre("weights", "kv_cache"));
  EXPECT_EQ(args.output, "json");
  EXPECT_EQ(args.timeout, absl::Seconds(5));

  ASSERT_OK_AND_ASSIGN(args, ParseColoctlArgs({"--engine=h:2", "continue", "--no-empty-cache"}));
  EXPECT_FALSE(args.empty_cache);
  ASSERT_OK_AND_ASSIGN(args, ParseColoctlArgs({"--engine=h:2", "generate", "--input_ids=1,2,3",
                                               "--max_new_tokens=4"}));
  EXPECT_THAT(args.input_ids, ElementsAre(1, 2, 3));
  EXPECT_EQ(args.max_new_tokens, 4);
  ASSERT_OK_AND_ASSIGN(
      args, ParseColoctlArgs({"--controller=h:1", "cycle", "--pause_mode=abort", "--step=9"}));
  EXPECT_EQ(args.pause_mode, "abort");
  EXPECT_EQ(args.step, 9);
  ASSERT_OK_AND_ASSIGN(args, ParseColoctlArgs({"--engine=h:2", "weight-groups"}));
  EXPECT_EQ(args.command, "weight-groups");
  EXPECT_EQ(args.destroy_group, "");
  ASSERT_OK_AND_ASSIGN(args,
                       ParseColoctlArgs({"--controller=h:1", "weight-groups", "--destroy=g"}));
  EXPECT_EQ(args.destroy_group, "g");
  ASSERT_OK_AND_ASSIGN(args, ParseColoctlArgs({"--help"}));
  EXPECT_TRUE(args.help);
}

TEST(ColoctlArgsTest, UsageErrors) {
  const auto bad = [](std::vector<std::string> argv, const std::string& text) {
    EXPECT_THAT(ParseColoctlArgs(argv),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(text)));
  };
  bad({"status"}, "exactly one of --controller");
  bad({"--controller=a:1", "--engine=b:2", "status"}, "exactly one");
  bad({"--controller=a:1"}, "no command");
  bad({"--controller=a:1", "frobnicate"}, "unknown command 'frobnicate'");
  bad({"--controller=a:1", "status", "--bogus=1"}, "unknown flag --bogus");
  bad({"--controller=a:1", "release"}, "needs --tags");
  bad({"--controller=a:1", "release", "--tags=heap"}, "unknown tag 'heap'");
  bad({"--controller=a:1", "status", "--tags=weights"}, "does not apply");
  bad({"--controller=a:1", "pause"}, "needs --mode");
  bad({"--controller=a:1", "pause", "--mode=later"}, "--mode must be");
  bad({"--controller=a:1", "status", "--no-empty-cache"}, "does not apply");
  bad({"--engine=a:1", "watch"}, "needs --controller");
  bad({"--engine=a:1", "cycle"}, "needs --controller");
  bad({"--engine=a:1", "generate"}, "needs --input_ids");
  bad({"--engine=a:1", "generate", "--input_ids=1,x"}, "'x' is not a token id");
  bad({"--engine=a:1", "status", "--output=yaml"}, "--output must be table or json");
  bad({"--engine=a:1", "status", "--timeout=soon"}, "--timeout");
  bad({"--engine=a:1", "status", "--timeout"}, "needs a value");
  bad({"--engine=a:1", "status", "engines"}, "unexpected argument");
  bad({"--engine=a:1", "status", "--destroy=g"}, "--destroy does not apply");
  bad({"--engine=a:1", "weight-groups", "--destroy="}, "--destroy needs a group name");
}

}  // namespace
}  // namespace controller
}  // namespace colo
