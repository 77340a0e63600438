// The controller is killed (SIGKILL) between BeginWeightSync and
// FinishWeightSync and restarted on the same port with the same journal: it
// recovers WEIGHT_SYNC from its journal (checked against the engines), a
// retried BeginWeightSync is a replay, and the cycle completes with the
// engines serving the new weights.
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;

TEST(ControllerRestartTest, RecoversWeightSyncFromJournalAndFinishesTheCycle) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, NodeOptions()));
  auto options = node->TrainerOptions();
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(options));
  ASSERT_OK(trainer->Rollout().status());
  ASSERT_OK(trainer->PrepareTraining(1).status());
  ASSERT_OK_AND_ASSIGN(const std::string checkpoint, trainer->Train(1));
  ASSERT_OK_AND_ASSIGN(auto group, trainer->BeginWeightSync(1));

  node->KillController();
  // The broadcast needs only the engines.
  std::vector<weight_sync::EngineUpdateResult> updates;
  ASSERT_OK(trainer->Broadcast(1, group, &updates).status());
  ASSERT_OK(node->RestartController());

  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::WEIGHT_SYNC) << state.reason();
  EXPECT_EQ(state.step(), 1);
  // A retry of the call whose reply the trainer might have lost.
  ASSERT_OK_AND_ASSIGN(auto again, trainer->BeginWeightSync(1));
  EXPECT_EQ(again.state().phase(), colo::v1::WEIGHT_SYNC);
  EXPECT_EQ(again.group().world_size(), group.group().world_size());

  ASSERT_OK_AND_ASSIGN(auto finished, trainer->FinishWeightSync(1));
  EXPECT_FALSE(finished.replayed());
  EXPECT_EQ(finished.state().phase(), colo::v1::ROLLOUT);
  ASSERT_OK_AND_ASSIGN(auto rollout, trainer->Rollout());
  ASSERT_OK_AND_ASSIGN(auto oracle,
                       OfflineGreedy(checkpoint, rollout.prompts, options.max_new_tokens));
  for (const auto& e : rollout.engines) {
    EXPECT_EQ(e.tokens, oracle) << e.engine;
    for (const auto& v : e.weight_versions) EXPECT_EQ(v, "1") << e.engine;
  }
  // And the next cycle runs normally on the restarted controller.
  ASSERT_OK(trainer->RunCycle(2).status());
}

}  // namespace
}  // namespace colo::test_util
