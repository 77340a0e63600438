// A controller bound to a non-loopback address (0.0.0.0) with
// --auth_token_file: mutating RPCs without the token (or with a wrong one)
// are UNAUTHENTICATED and change nothing; reads stay open; with the token
// the trainer's cycle runs.
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/e2e/e2e_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::colo::controller::demo::DemoTrainer;

TEST(AuthTest, NonLoopbackControllerRequiresTheToken) {
  ASSERT_OK_AND_ASSIGN(const std::string model, E2EModel());
  const std::string token_file = MakeTempDir("token_") + "/token";
  std::ofstream(token_file) << "e2e-s3cret\n";
  NodeOptions options;
  options.controller_flags = {"--host=0.0.0.0", "--auth_token_file=" + token_file};
  ASSERT_OK_AND_ASSIGN(auto node, E2ENode::Start(model, options));

  auto trainer_options = node->TrainerOptions();
  ASSERT_OK_AND_ASSIGN(auto anonymous, DemoTrainer::Create(trainer_options));
  EXPECT_THAT(anonymous->PrepareTraining(1), StatusIs(absl::StatusCode::kUnauthenticated));
  trainer_options.auth_token = "wrong";
  ASSERT_OK_AND_ASSIGN(auto impostor, DemoTrainer::Create(trainer_options));
  EXPECT_THAT(impostor->PrepareTraining(1), StatusIs(absl::StatusCode::kUnauthenticated));
  {
    grpc::ClientContext c;
    colo::v1::TransitionResponse o;
    grpc::Status s = node->stub().Recover(&c, colo::v1::RecoverRequest(), &o);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  }
  // Reads need no token; nothing changed.
  ASSERT_OK_AND_ASSIGN(auto state, anonymous->GetState(false));
  EXPECT_EQ(state.phase(), colo::v1::ROLLOUT);
  EXPECT_EQ(state.step(), 0);

  trainer_options.auth_token = "e2e-s3cret";
  ASSERT_OK_AND_ASSIGN(auto trainer, DemoTrainer::Create(trainer_options));
  ASSERT_OK_AND_ASSIGN(auto cycle, trainer->RunCycle(1));
  EXPECT_EQ(cycle.phases.back().state.phase(), colo::v1::ROLLOUT);
}

}  // namespace
}  // namespace colo::test_util
