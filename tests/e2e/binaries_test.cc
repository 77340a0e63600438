// The three binaries together as processes: colo-engine and colo-controller
// serve grpc.health.v1.Health (SERVING), each service answers one RPC
// (RolloutEngine.GetServerInfo, MemoryController.GetState, Health.Check on
// "colo.generate"), coloctl talks to both, and SIGTERM drains each server
// with exit code 0. Bad input: an unknown flag or an unreadable --model
// exits non-zero with one clear line.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

int Lines(const std::string& s) {
  std::vector<std::string> lines = absl::StrSplit(s, '\n', absl::SkipEmpty());
  return static_cast<int>(lines.size());
}

TEST(BinariesTest, ThreeBinariesServeAndDrainOnSigterm) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.num_engines = 1;
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  // ServerProcess waited for Health "" SERVING; the generate service too.
  EXPECT_THAT(CheckHealth(node->engine_address(0), "colo.generate"), IsOkAndHolds("SERVING"));
  ASSERT_OK_AND_ASSIGN(auto info, EngineInfo(node->engine_stub(0)));
  EXPECT_EQ(info.state(), "serving");
  EXPECT_EQ(info.model().num_layers(), 4);
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::ROLLOUT);

  const std::string coloctl = RunfilePath("controller/coloctl");
  CommandResult status = RunCommand(coloctl + " --controller=" + node->controller_address() + " status");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_THAT(status.output, HasSubstr("ROLLOUT"));
  CommandResult engine = RunCommand(coloctl + " --engine=" + node->engine_address(0) + " status");
  EXPECT_EQ(engine.exit_code, 0) << engine.output;
  EXPECT_THAT(engine.output, HasSubstr("serving"));

  EXPECT_THAT(node->controller().Terminate(), IsOkAndHolds(0));
  EXPECT_THAT(node->engine(0).Terminate(), IsOkAndHolds(0));
}

TEST(BinariesTest, BadFlagsExitNonZeroWithOneLine) {
  const std::string engine = RunfilePath("engine/server/colo-engine");
  const std::string controller = RunfilePath("controller/colo-controller");
  const std::string coloctl = RunfilePath("controller/coloctl");
  const std::string trainer = RunfilePath("controller/demo/colo-demo-trainer");
  struct Case {
    std::string command;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {engine + " --bogus=1", "bogus"},
      {engine + " --model=/nonexistent/colo-model --device=cpu", "/nonexistent/colo-model"},
      {controller + " --bogus=1", "bogus"},
      {coloctl + " --bogus=1 status", "bogus"},
      {trainer + " --bogus=1", "bogus"},
      {trainer + " --controller=127.0.0.1:1 --model=/nonexistent/colo-model --checkpoint_dir=" +
           MakeTempDir("ckpt_"),
       "/nonexistent/colo-model"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.command);
    CommandResult r = RunCommand(c.command);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_EQ(Lines(r.output), 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expect));
  }
}

}  // namespace
}  // namespace colo::test_util
