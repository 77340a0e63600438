// Retried trainer calls with the same step are no-ops (replayed, no engine
// touched a second time, as the engines' own logs show); out-of-order calls
// are FAILED_PRECONDITION naming both phases; a stale step is refused.
#include <fstream>
#include <sstream>
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

// Lines of the engine's log containing `needle`.
int CountLogLines(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
  return n;
}

TEST(IdempotencyTest, RetriesReplayAndOutOfOrderCallsNameBothPhases) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, NodeOptions()));
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(node->TrainerOptions()));
  const std::string log0 = node->engine(0).log_path();

  EXPECT_THAT(trainer->FinishWeightSync(1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FinishWeightSync needs phase WEIGHT_SYNC, node is in ROLLOUT")));

  ASSERT_OK_AND_ASSIGN(auto first, trainer->PrepareTraining(1));
  EXPECT_FALSE(first.replayed());
  ASSERT_OK_AND_ASSIGN(auto retry, trainer->PrepareTraining(1));
  EXPECT_TRUE(retry.replayed());
  EXPECT_EQ(retry.state().phase(), colo::v1::TRAINING);
  EXPECT_EQ(CountLogLines(log0, "] released "), 1);
  EXPECT_THAT(trainer->FinishWeightSync(1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FinishWeightSync needs phase WEIGHT_SYNC, node is in TRAINING")));

  ASSERT_OK(trainer->Train(1).status());
  ASSERT_OK_AND_ASSIGN(auto group, trainer->BeginWeightSync(1));
  ASSERT_OK_AND_ASSIGN(auto group_again, trainer->BeginWeightSync(1));
  EXPECT_EQ(group_again.state().phase(), colo::v1::WEIGHT_SYNC);
  EXPECT_EQ(group_again.group().SerializeAsString(), group.group().SerializeAsString());
  EXPECT_EQ(CountLogLines(log0, "] resumed "), 1);
  // A later step's call in the middle of step 1's cycle is refused.
  EXPECT_THAT(trainer->BeginWeightSync(2),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("BeginWeightSync needs phase TRAINING, node is in WEIGHT_SYNC")));

  std::vector<weight_sync::EngineUpdateResult> updates;
  ASSERT_OK(trainer->Broadcast(1, group, &updates).status());
  ASSERT_OK_AND_ASSIGN(auto finished, trainer->FinishWeightSync(1));
  EXPECT_FALSE(finished.replayed());
  ASSERT_OK_AND_ASSIGN(auto finished_again, trainer->FinishWeightSync(1));
  EXPECT_TRUE(finished_again.replayed());
  EXPECT_EQ(finished_again.state().phase(), colo::v1::ROLLOUT);
  EXPECT_EQ(CountLogLines(log0, "] resumed "), 2);
  ASSERT_OK_AND_ASSIGN(auto prepared_again, trainer->PrepareTraining(1));
  EXPECT_TRUE(prepared_again.replayed());
  EXPECT_EQ(prepared_again.state().phase(), colo::v1::ROLLOUT);
  EXPECT_EQ(CountLogLines(log0, "] released "), 1);

  // Out of order in ROLLOUT, for a new step: both phases named.
  EXPECT_THAT(trainer->FinishWeightSync(2),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("WEIGHT_SYNC"), HasSubstr("ROLLOUT"))));
  EXPECT_THAT(trainer->PrepareTraining(0),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("older than")));
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::ROLLOUT);
}

}  // namespace
}  // namespace colo::test_util
