// An engine killed mid-cycle (node in TRAINING): the controller's health
// watch moves the node to FAILED with a reason naming the engine within the
// deadline; trainer calls fail with the phase named; Recover stays FAILED
// while the engine is down, then — after the engine restarts on the same
// port and the survivor (whose weights were released without a host backup)
// gets weights again — `coloctl recover` returns the node to ROLLOUT and the
// abandoned step runs as a full cycle.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;
using ::testing::AllOf;
using ::testing::HasSubstr;

absl::Status Recover(colo::v1::MemoryController::Stub& stub) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  colo::v1::TransitionResponse response;
  grpc::Status s = stub.Recover(&context, colo::v1::RecoverRequest(), &response);
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

TEST(EngineLossTest, KilledEngineFailsNodeAndRecoverReturnsToRollout) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, NodeOptions()));
  auto options = node->TrainerOptions();
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(options));
  ASSERT_OK(trainer->Rollout().status());
  ASSERT_OK(trainer->PrepareTraining(1).status());

  const std::string lost = node->engine_address(1);
  const absl::Time killed = absl::Now();
  node->KillEngine(1);
  // Health probes every 200 ms, lost after 2 failures: FAILED well within 5 s.
  ASSERT_OK_AND_ASSIGN(auto failed, node->WaitForPhase(colo::v1::FAILED, absl::Seconds(5)));
  const absl::Duration detect = absl::Now() - killed;
  std::printf("engine loss detected in %s: %s\n", absl::FormatDuration(detect).c_str(),
              failed.reason().c_str());
  EXPECT_THAT(failed.reason(), AllOf(HasSubstr("engine " + lost + " lost"),
                                     HasSubstr("consecutive health probes failed")));
  EXPECT_FALSE(failed.engines(1).healthy());
  EXPECT_THAT(trainer->BeginWeightSync(1),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr("node is in FAILED"), HasSubstr(lost))));

  // Still down: Recover answers promptly, names the engine, stays FAILED.
  absl::Status down = Recover(node->stub());
  EXPECT_FALSE(down.ok());
  EXPECT_THAT(std::string(down.message()),
              AllOf(HasSubstr(lost + " GetServerInfo: UNAVAILABLE"), HasSubstr("stays FAILED")));
  ASSERT_OK_AND_ASSIGN(auto still, GetNodeState(node->stub(), false));
  EXPECT_EQ(still.phase(), colo::v1::FAILED);

  ASSERT_OK(node->RestartEngine(1));
  // The survivor's weights were released without a host backup: Recover
  // brings its memory back but cannot claim ROLLOUT until it has weights.
  EXPECT_THAT(Recover(node->stub()),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(node->engine_address(0)), HasSubstr("needs weights"))));
  {
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    colo::v1::UpdateWeightsFromDiskRequest r;
    r.set_model_path(model);
    r.set_weight_version("0");
    colo::v1::UpdateWeightsResponse o;
    grpc::Status s = node->engine_stub(0).UpdateWeightsFromDisk(&c, r, &o);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  // The operator's command.
  const std::string cmd = absl::StrCat(RunfilePath("controller/coloctl"),
                                       " --controller=", node->controller_address(),
                                       " recover 2>&1");
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof(buf), pipe) != nullptr) out += buf;
  const int rc = ::pclose(pipe);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("ROLLOUT"));
  ASSERT_OK_AND_ASSIGN(auto state, GetNodeState(node->stub(), false));
  EXPECT_EQ(state.phase(), colo::v1::ROLLOUT);
  for (const auto& e : state.engines()) EXPECT_TRUE(e.healthy()) << e.address();

  // The abandoned step runs again as a full cycle, and both engines serve it.
  ASSERT_OK_AND_ASSIGN(auto cycle, trainer->RunCycle(1));
  ASSERT_OK_AND_ASSIGN(auto rollout, trainer->Rollout());
  ASSERT_OK_AND_ASSIGN(auto oracle,
                       OfflineGreedy(cycle.checkpoint, rollout.prompts, options.max_new_tokens));
  for (const auto& e : rollout.engines) {
    EXPECT_EQ(e.tokens, oracle) << e.engine;
    for (const auto& v : e.weight_versions) EXPECT_EQ(v, "1") << e.engine;
  }
}

}  // namespace
}  // namespace colo::test_util
