// coloctl against a real in-process controller whose engines are fakes
// served over gRPC.
#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "controller/coloctl_lib.h"
#include "controller/controller_service.h"
#include "controller/grpc_engine_client.h"
#include "controller/testing/fake_engine.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::unique_ptr<grpc::Server> Serve(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

class ColoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int port = 0;
    engine_server_ = Serve(&engine_service_, &port);
    ASSERT_NE(engine_server_, nullptr);
    engine_address_ = "127.0.0.1:" + std::to_string(port);
    GrpcEngineClient::Options client_options;
    client_options.address = engine_address_;
    client_options.call_timeout = absl::Seconds(10);
    auto client = GrpcEngineClient::Create(client_options);
    ASSERT_OK(client.status());
    std::vector<std::unique_ptr<EngineClient>> clients;
    clients.push_back(std::move(*client));
    ControllerImpl::Options options;
    options.health_interval = absl::ZeroDuration();
    auto impl = ControllerImpl::Create(options, std::move(clients), nullptr);
    ASSERT_OK(impl.status());
    impl_ = std::move(*impl);
    service_ = std::make_unique<ControllerService>(impl_.get(), &auth_);
    controller_server_ = Serve(service_.get(), &port);
    ASSERT_NE(controller_server_, nullptr);
    controller_address_ = "127.0.0.1:" + std::to_string(port);
  }

  void TearDown() override {
    impl_->Shutdown();
    controller_server_->Shutdown();
    engine_server_->Shutdown();
  }

  // Runs coloctl; returns the exit code, output in out_ / err_.
  int Run(std::vector<std::string> argv) {
    out_.str("");
    err_.str("");
    return ColoctlMain(argv, out_, err_);
  }

  FakeEngine engine_{FakeEngine::Options{}};
  FakeRolloutEngineService engine_service_{&engine_};
  std::unique_ptr<grpc::Server> engine_server_;
  std::string engine_address_;
  TokenChecker auth_{""};
  std::unique_ptr<ControllerImpl> impl_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<grpc::Server> controller_server_;
  std::string controller_address_;
  std::ostringstream out_, err_;
};

TEST_F(ColoctlTest, StatusTableAndJson) {
  const std::string c = "--controller=" + controller_address_;
  ASSERT_EQ(Run({c, "status"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("phase   ROLLOUT"), HasSubstr(engine_address_)));
  ASSERT_EQ(Run({c, "status", "--output=json"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(StartsWith("{"), HasSubstr("\"phase\":\"ROLLOUT\"")));
  ASSERT_EQ(Run({c, "engines"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("serving"));
}

TEST_F(ColoctlTest, CycleDrivesTheControllerAndPrintsATimeline) {
  const std::string c = "--controller=" + controller_address_;
  ASSERT_EQ(Run({c, "cycle"}), 0) << err_.str();
  EXPECT_THAT(out_.str(),
              AllOf(HasSubstr("cycle step 1"), HasSubstr("PrepareTraining"),
                    HasSubstr("-> TRAINING"), HasSubstr("-> WEIGHT_SYNC"), HasSubstr("RELEASING"),
                    HasSubstr("KV_RESUMING"), HasSubstr("total")));
  EXPECT_EQ(impl_->Snapshot(nullptr).step(), 1);
  EXPECT_EQ(impl_->Snapshot(nullptr).phase(), ::colo::v1::ROLLOUT);
  // The next cycle picks the next step.
  ASSERT_EQ(Run({c, "cycle", "--output=json"}), 0) << err_.str();
  EXPECT_EQ(impl_->Snapshot(nullptr).step(), 2);
}

TEST_F(ColoctlTest, RpcErrorsExitOneWithCodeAndMessage) {
  const std::string c = "--controller=" + controller_address_;
  engine_.FailNext("PauseGeneration", absl::UnimplementedError("not yet"));
  EXPECT_EQ(Run({c, "cycle"}), 1);
  EXPECT_THAT(err_.str(), AllOf(StartsWith("error: UNIMPLEMENTED: "), HasSubstr("not yet")));
  const std::string error = err_.str();
  EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1);
  ASSERT_EQ(Run({c, "status"}), 0);
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("FAILED"), HasSubstr("not yet")));
  ASSERT_EQ(Run({c, "recover"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("recovered: node is in ROLLOUT"));
  EXPECT_EQ(impl_->Snapshot(nullptr).phase(), ::colo::v1::ROLLOUT);
  EXPECT_EQ(Run({"--controller=127.0.0.1:1", "status", "--timeout=2s"}), 1);
  EXPECT_THAT(err_.str(), StartsWith("error: UNAVAILABLE"));
}

TEST_F(ColoctlTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Run({"status"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("see coloctl --help"));
  EXPECT_EQ(Run({"--controller=" + controller_address_, "status",
                 "--auth_token_file=/nonexistent/token"}),
            2);
  EXPECT_EQ(Run({"--help"}), 0);
  EXPECT_THAT(out_.str(), HasSubstr("usage: coloctl"));
}

TEST_F(ColoctlTest, FanOutCommandsThroughTheController) {
  const std::string c = "--controller=" + controller_address_;
  // Release while serving: the engine refuses; exit 1 with the engine's error.
  EXPECT_EQ(Run({c, "release", "--tags=kv_cache"}), 1);
  EXPECT_THAT(out_.str(), HasSubstr("FAILED_PRECONDITION"));
  ASSERT_EQ(Run({c, "pause", "--mode=retract"}), 0) << out_.str();
  ASSERT_EQ(Run({c, "release", "--tags=kv_cache"}), 0) << out_.str();
  EXPECT_THAT(out_.str(), HasSubstr("kv_cache=40.00 GiB"));
  EXPECT_FALSE(engine_.tag_resident("kv_cache"));
  ASSERT_EQ(Run({c, "memory"}), 0);
  EXPECT_THAT(out_.str(), AllOf(HasSubstr("kv_cache"), HasSubstr("released")));
  ASSERT_EQ(Run({c, "resume", "--tags=kv_cache"}), 0) << out_.str();
  ASSERT_EQ(Run({c, "continue", "--no-empty-cache"}), 0) << out_.str();
  EXPECT_THAT(engine_.calls(), ::testing::Contains("ContinueGeneration(keep)"));
}

TEST_F(ColoctlTest, EngineCommandsAndGenerate) {
  const std::string e = "--engine=" + engine_address_;
  ASSERT_EQ(Run({e, "status"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("state    serving"));
  ASSERT_EQ(Run({e, "memory", "--output=json"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("\"kind\":\"cuda\""));
  ASSERT_EQ(Run({e, "pause", "--mode=abort"}), 0) << err_.str();
  EXPECT_TRUE(engine_.paused());
  ASSERT_EQ(Run({e, "continue"}), 0) << err_.str();
  EXPECT_FALSE(engine_.paused());
  ASSERT_EQ(Run({e, "generate", "--input_ids=5,6,7", "--max_new_tokens=3"}), 0) << err_.str();
  EXPECT_THAT(out_.str(), AllOf(StartsWith("8 9 10\n"), HasSubstr("finish_reason=length")));
  // Through the controller: its first engine.
  ASSERT_EQ(Run({"--controller=" + controller_address_, "generate", "--input_ids=1",
                 "--max_new_tokens=2"}),
            0)
      << err_.str();
  EXPECT_THAT(out_.str(), StartsWith("2 3\n"));
}

TEST_F(ColoctlTest, WatchEndsAtTheTimeout) {
  ASSERT_EQ(Run({"--controller=" + controller_address_, "watch", "--timeout=300ms"}), 0)
      << err_.str();
  EXPECT_THAT(out_.str(), HasSubstr("ROLLOUT"));
}

}  // namespace
}  // namespace controller
}  // namespace colo
