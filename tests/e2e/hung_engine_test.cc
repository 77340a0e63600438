// A hung (SIGSTOPped) engine, with real processes (issue 18):
//  - `coloctl status` does not show it as healthy: it shows the age of the
//    engine's last answer and marks it STALE once that passes the bound
//    (the health watch has not declared it lost yet), healthy again after
//    SIGCONT;
//  - SIGTERM to the controller while a transition is blocked on it exits
//    promptly (the in-flight engine calls are cancelled, not waited out for
//    --engine_timeout), and the journal is left so that a restarted
//    controller finishes the transition.
#include <signal.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Watches the node (bounded) until engine `i`'s health is `health`.
absl::StatusOr<colo::v1::NodeState> WaitForHealth(E2ENode& node, int i, const std::string& health,
                                                  absl::Duration timeout) {
  return node.WaitFor(
      [&](const colo::v1::NodeState& s) { return s.engines(i).health() == health; },
      absl::StrCat("engine ", i, " health ", health), timeout);
}

TEST(HungEngineTest, StatusShowsAStoppedEngineAsStale) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.health_interval = absl::Milliseconds(200);
  options.health_failures = 1000;  // never declared lost within the test
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  ASSERT_OK(WaitForHealth(*node, 1, "healthy", absl::Seconds(30)).status());

  node->StopEngine(1);
  absl::StatusOr<colo::v1::NodeState> stale = WaitForHealth(*node, 1, "stale", absl::Seconds(60));
  node->ContinueEngine(1);
  ASSERT_OK(stale.status());
  EXPECT_EQ(stale->phase(), colo::v1::ROLLOUT);
  EXPECT_TRUE(stale->engines(1).healthy()) << "stale, not lost";
  EXPECT_EQ(stale->engines(0).health(), "healthy");
  EXPECT_GT(stale->engines(1).last_ok_us(), 0);

  // While it is stopped again, the table says so.
  node->StopEngine(1);
  ASSERT_OK(WaitForHealth(*node, 1, "stale", absl::Seconds(60)).status());
  CommandResult table = Coloctl(*node, "status");
  node->ContinueEngine(1);
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output, AllOf(HasSubstr("STALE"), HasSubstr("ago")));
  const size_t row = table.output.find(node->engine_address(1));
  ASSERT_NE(row, std::string::npos) << table.output;
  EXPECT_THAT(table.output.substr(row, table.output.find('\n', row) - row), HasSubstr("STALE"));

  ASSERT_OK(WaitForHealth(*node, 1, "healthy", absl::Seconds(60)).status());
  CommandResult again = Coloctl(*node, "status");
  EXPECT_THAT(again.output, testing::Not(HasSubstr("STALE"))) << again.output;
}

TEST(HungEngineTest, SigtermDuringATransitionBlockedOnAHungEngineExitsPromptly) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  // No health watch: the hang must not turn into "engine lost" (which
  // already cancels the calls); the engine timeout is far beyond the test.
  options.health_interval = absl::ZeroDuration();
  options.controller_flags = {"--engine_timeout=600s"};
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  auto trainer_options = node->TrainerOptions();
  trainer_options.rpc_timeout = absl::Seconds(600);
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(trainer_options));
  ASSERT_OK(trainer->Rollout().status());

  node->StopEngine(1);
  absl::Status prepared;
  absl::Notification returned;
  std::thread call([&] {
    prepared = trainer->PrepareTraining(1).status();
    returned.Notify();
  });
  // The transition is journaled (RELEASING) before any engine call; engine 1
  // cannot answer its PauseGeneration.
  absl::StatusOr<colo::v1::NodeState> releasing =
      node->WaitForPhase(colo::v1::RELEASING, absl::Seconds(60));
  EXPECT_OK(releasing.status());

  const absl::Time sigterm = absl::Now();
  absl::StatusOr<int> exit_code = node->controller().Terminate(absl::Seconds(60));
  const absl::Duration took = absl::Now() - sigterm;
  node->ContinueEngine(1);
  EXPECT_THAT(exit_code, IsOkAndHolds(0)) << "took " << took;
  std::printf("controller exited %s after SIGTERM with a transition blocked on a stopped engine\n",
              absl::FormatDuration(took).c_str());
  ASSERT_TRUE(returned.WaitForNotificationWithTimeout(absl::Seconds(60)));
  call.join();
  EXPECT_FALSE(prepared.ok());
  EXPECT_THAT(std::string(prepared.message()), HasSubstr("shutting down")) << prepared;

  // The journal still says RELEASING: a restarted controller finishes it.
  ASSERT_OK(node->RestartController());
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::TRAINING) << state.reason();
  EXPECT_EQ(state.step(), 1);
  ASSERT_OK(trainer->PrepareTraining(1).status());  // the trainer's retry: a replay
  ASSERT_OK(trainer->Train(1).status());
  ASSERT_OK_AND_ASSIGN(auto group, trainer->BeginWeightSync(1));
  std::vector<weight_sync::EngineUpdateResult> updates;
  ASSERT_OK(trainer->Broadcast(1, group, &updates).status());
  ASSERT_OK_AND_ASSIGN(auto finished, trainer->FinishWeightSync(1));
  EXPECT_EQ(finished.state().phase(), colo::v1::ROLLOUT);
}

}  // namespace
}  // namespace colo::test_util
