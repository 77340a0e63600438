// Engines started with --weights_host_backup=true pass the controller's
// release verification (issue 18): on the CPU backend host RSS is the
// device, and the weights' host backup stays in the process, so the expected
// drop of RSS excludes the backup bytes the engine reports. Two
// `coloctl cycle`s with verification on (the default --verify_fraction),
// then a full cycle with a weight broadcast; the weights come back from the
// backup bit-exact (greedy tokens equal the offline oracle of the model).
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::testing::HasSubstr;

TEST(HostBackupTest, CyclesWithHostBackupPassVerification) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  NodeOptions options;
  options.engine_flags = {"--weights_host_backup=true"};
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));
  auto trainer_options = node->TrainerOptions();
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(trainer_options));
  ASSERT_OK_AND_ASSIGN(auto before, trainer->Rollout());

  for (int cycle = 1; cycle <= 2; ++cycle) {
    SCOPED_TRACE(absl::StrCat("coloctl cycle ", cycle));
    CommandResult r = Coloctl(*node, absl::StrCat("cycle --step=", cycle));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("FinishWeightSync"));
    ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), true));
    ASSERT_EQ(state.phase(), colo::v1::ROLLOUT) << state.reason();
    for (const auto& e : state.engines()) {
      EXPECT_EQ(e.engine_state(), "serving") << e.address();
      EXPECT_GT(TagResidentBytes(e.memory(), "weights"), 0) << e.address();
    }
  }
  // The weights came back from the host backup: same tokens as before.
  ASSERT_OK_AND_ASSIGN(auto after, trainer->Rollout());
  ASSERT_OK_AND_ASSIGN(auto oracle,
                       OfflineGreedy(model, after.prompts, trainer_options.max_new_tokens));
  for (size_t i = 0; i < after.engines.size(); ++i) {
    EXPECT_EQ(after.engines[i].tokens, before.engines[i].tokens) << after.engines[i].engine;
    EXPECT_EQ(after.engines[i].tokens, oracle) << after.engines[i].engine;
    for (const auto& v : after.engines[i].weight_versions) EXPECT_EQ(v, "0");
  }

  // A trainer cycle with a broadcast works on the same engines.
  ASSERT_OK_AND_ASSIGN(auto cycle, trainer->RunCycle(3));
  ASSERT_OK_AND_ASSIGN(auto rollout, trainer->Rollout());
  ASSERT_OK_AND_ASSIGN(auto trained,
                       OfflineGreedy(cycle.checkpoint, rollout.prompts,
                                     trainer_options.max_new_tokens));
  for (const auto& e : rollout.engines) {
    EXPECT_EQ(e.tokens, trained) << e.engine;
    for (const auto& v : e.weight_versions) EXPECT_EQ(v, "3") << e.engine;
  }
}

}  // namespace
}  // namespace colo::test_util
