#include "controller/phase.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::colo::v1::FAILED;
using ::colo::v1::KV_RESUMING;
using ::colo::v1::PAUSED_FOR_UPDATE;
using ::colo::v1::RELEASING;
using ::colo::v1::ROLLOUT;
using ::colo::v1::TRAINING;
using ::colo::v1::WEIGHT_SYNC;
using ::colo::v1::WEIGHTS_RESUMING;
using ::testing::HasSubstr;

TEST(PhaseTest, TheColocatedCycleIsLegal) {
  const Phase cycle[] = {ROLLOUT,     RELEASING,   TRAINING, WEIGHTS_RESUMING,
                         WEIGHT_SYNC, KV_RESUMING, ROLLOUT};
  for (size_t i = 0; i + 1 < sizeof(cycle) / sizeof(cycle[0]); ++i) {
    EXPECT_OK(CheckTransition(cycle[i], cycle[i + 1]))
        << PhaseName(cycle[i]) << " -> " << PhaseName(cycle[i + 1]);
  }
  EXPECT_OK(CheckTransition(ROLLOUT, PAUSED_FOR_UPDATE));
  EXPECT_OK(CheckTransition(PAUSED_FOR_UPDATE, ROLLOUT));
  EXPECT_OK(CheckTransition(FAILED, ROLLOUT));
}

TEST(PhaseTest, EveryPhaseButFailedCanFail) {
  for (Phase p : {ROLLOUT, RELEASING, TRAINING, WEIGHTS_RESUMING, WEIGHT_SYNC, KV_RESUMING,
                  PAUSED_FOR_UPDATE}) {
    EXPECT_TRUE(IsLegalTransition(p, FAILED)) << PhaseName(p);
  }
  EXPECT_FALSE(IsLegalTransition(FAILED, FAILED));
}

TEST(PhaseTest, ExactlyTheListedTransitionsAreLegal) {
  int legal = 0;
  for (int from = 0; from <= 8; ++from) {
    for (int to = 0; to <= 8; ++to) {
      if (IsLegalTransition(static_cast<Phase>(from), static_cast<Phase>(to))) ++legal;
    }
  }
  // 9 edges of the cycle and update path + 7 edges into FAILED.
  EXPECT_EQ(legal, 16);
}

TEST(PhaseTest, IllegalTransitionNamesBothPhases) {
  EXPECT_THAT(CheckTransition(ROLLOUT, TRAINING),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("ROLLOUT -> TRAINING")));
  EXPECT_THAT(CheckTransition(FAILED, TRAINING),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("FAILED -> TRAINING")));
}

TEST(PhaseTest, RequirePhaseMessage) {
  EXPECT_OK(RequirePhase("FinishWeightSync", WEIGHT_SYNC, WEIGHT_SYNC));
  EXPECT_THAT(RequirePhase("FinishWeightSync", WEIGHT_SYNC, ROLLOUT),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FinishWeightSync needs phase WEIGHT_SYNC, node is in ROLLOUT")));
  EXPECT_THAT(RequirePhase("PrepareTraining", ROLLOUT, FAILED, "engine x lost"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("engine x lost")));
}

TEST(PhaseTest, StablePhases) {
  EXPECT_TRUE(IsStablePhase(ROLLOUT));
  EXPECT_TRUE(IsStablePhase(WEIGHT_SYNC));
  EXPECT_FALSE(IsStablePhase(RELEASING));
  EXPECT_FALSE(IsStablePhase(WEIGHTS_RESUMING));
  EXPECT_FALSE(IsStablePhase(KV_RESUMING));
  EXPECT_EQ(PhaseName(static_cast<Phase>(42)), "PHASE_42");
}

}  // namespace
}  // namespace controller
}  // namespace colo
