// A TP=2 engine under the controller (real processes, tests/e2e fixture):
// full colocated cycles with a TP=2 and a TP=1 engine on one node (the
// release of every rank verified in total and per rank, the weight-sync
// group spans 1 + 2 + 1 ranks, rollouts after each cycle come from the
// broadcast weights); and a rank killed under the controller moves the node
// to FAILED naming the engine and the rank.
#include <signal.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/tp/tp_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(TpControllerTest, CyclesWithATp2AndATp1Engine) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.per_engine_flags = {TpFlags(2), {}};
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(node->TrainerOptions()));
  for (int64_t step = 1; step <= 2; ++step) {
    ASSERT_OK_AND_ASSIGN(auto cycle, trainer->RunCycle(step));
    ASSERT_EQ(cycle.updates.size(), 2u);
    for (const auto& u : cycle.updates) {
      EXPECT_EQ(u.response.weight_version(), absl::StrCat(step)) << u.engine;
    }
  }
  ASSERT_OK_AND_ASSIGN(auto rollout, trainer->Rollout());
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), /*include_memory=*/true));
  EXPECT_EQ(state.phase(), colo::v1::ROLLOUT) << state.reason();
  ASSERT_OK_AND_ASSIGN(auto info, EngineInfo(node->engine_stub(0)));
  EXPECT_EQ(info.tp_size(), 2);
  EXPECT_EQ(info.weight_version(), "2");
  EXPECT_EQ(state.engines(0).memory().ranks_size(), 2);
}

TEST(TpControllerTest, KilledRankMovesTheNodeToFailed) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.num_engines = 1;
  options.engine_flags = TpFlags(2);
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  ASSERT_OK_AND_ASSIGN(auto info, EngineInfo(node->engine_stub(0)));
  ASSERT_EQ(info.ranks_size(), 2);
  const absl::Time killed = absl::Now();
  ASSERT_EQ(kill(static_cast<pid_t>(info.ranks(1).pid()), SIGKILL), 0);
  ASSERT_OK_AND_ASSIGN(auto failed, node->WaitForPhase(colo::v1::FAILED, absl::Seconds(20)));
  std::printf("node FAILED %s after the kill: %s\n",
              absl::FormatDuration(absl::Now() - killed).c_str(), failed.reason().c_str());
  EXPECT_EQ(failed.phase(), colo::v1::FAILED);
  EXPECT_THAT(failed.reason(), AllOf(HasSubstr(node->engine_address(0)),
                                     HasSubstr("tensor-parallel rank 1")));
}

}  // namespace
}  // namespace colo::test_util
