// The controller service against a real in-process gRPC server, talking to
// fake engines over real gRPC.
#include "controller/controller_service.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "controller/grpc_engine_client.h"
#include "controller/testing/fake_engine.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "proto/status/grpc_status.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace controller {
namespace {

GrpcEngineClient::Options ClientOptions(const std::string& address,
                                        absl::Duration call_timeout = absl::Seconds(60),
                                        absl::Duration probe_timeout = absl::Seconds(2)) {
  GrpcEngineClient::Options options;
  options.address = address;
  options.call_timeout = call_timeout;
  options.probe_timeout = probe_timeout;
  return options;
}

using ::testing::AllOf;
using ::testing::HasSubstr;

std::unique_ptr<grpc::Server> Serve(grpc::Service* service, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(service);
  return builder.BuildAndStart();
}

// A RolloutEngine whose every RPC is UNIMPLEMENTED (an engine binary that
// does not generate yet).
class UnimplementedEngine final : public ::colo::v1::RolloutEngine::Service {};

class ControllerServiceTest : public ::testing::Test {
 protected:
  // Starts `n` fake engines (engine i unimplemented when `unimplemented_index`
  // == i), the controller and a client stub.
  void Start(int n, ControllerImpl::Options options = {}, std::string token = "",
             int unimplemented_index = -1) {
    std::vector<std::unique_ptr<EngineClient>> clients;
    for (int i = 0; i < n; ++i) {
      int port = 0;
      fakes_.push_back(std::make_unique<FakeEngine>(FakeEngine::Options{}));
      if (i == unimplemented_index) {
        services_.push_back(std::make_unique<UnimplementedEngine>());
      } else {
        services_.push_back(std::make_unique<FakeRolloutEngineService>(fakes_.back().get()));
      }
      engine_servers_.push_back(Serve(services_.back().get(), &port));
      ASSERT_NE(engine_servers_.back(), nullptr);
      addresses_.push_back("127.0.0.1:" + std::to_string(port));
      auto client = GrpcEngineClient::Create(
          ClientOptions(addresses_.back(), absl::Seconds(10), absl::Milliseconds(200)));
      ASSERT_OK(client.status());
      clients.push_back(std::move(*client));
    }
    auto impl = ControllerImpl::Create(options, std::move(clients), nullptr);
    ASSERT_OK(impl.status());
    impl_ = std::move(*impl);
    auth_ = std::make_unique<TokenChecker>(token);
    service_ = std::make_unique<ControllerService>(impl_.get(), auth_.get());
    int port = 0;
    server_ = Serve(service_.get(), &port);
    ASSERT_NE(server_, nullptr);
    stub_ = ::colo::v1::MemoryController::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    for (auto& f : fakes_) f->SetHang(false);
    if (impl_) impl_->Shutdown();
    if (server_) server_->Shutdown();
    for (auto& s : engine_servers_) {
      if (s) s->Shutdown();
    }
  }

  std::unique_ptr<grpc::ClientContext> Context(const std::string& token = "") {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    AddBearerToken(context.get(), token);
    return context;
  }

  static ControllerImpl::Options NoHealth() {
    ControllerImpl::Options o;
    o.health_interval = absl::ZeroDuration();
    return o;
  }

  std::vector<std::unique_ptr<FakeEngine>> fakes_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::vector<std::unique_ptr<grpc::Server>> engine_servers_;
  std::vector<std::string> addresses_;
  std::unique_ptr<ControllerImpl> impl_;
  std::unique_ptr<TokenChecker> auth_;
  std::unique_ptr<ControllerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<::colo::v1::MemoryController::Stub> stub_;
};

TEST_F(ControllerServiceTest, FullCycleOverGrpc) {
  Start(2, NoHealth());
  ::colo::v1::TransitionResponse transition;
  ::colo::v1::PrepareTrainingRequest prepare;
  prepare.set_step(1);
  ASSERT_TRUE(stub_->PrepareTraining(Context().get(), prepare, &transition).ok());
  EXPECT_EQ(transition.state().phase(), ::colo::v1::TRAINING);
  ASSERT_TRUE(stub_->PrepareTraining(Context().get(), prepare, &transition).ok());
  EXPECT_TRUE(transition.replayed());

  ::colo::v1::BeginWeightSyncRequest begin;
  begin.set_step(1);
  ::colo::v1::BeginWeightSyncResponse begun;
  ASSERT_TRUE(stub_->BeginWeightSync(Context().get(), begin, &begun).ok());
  EXPECT_EQ(begun.group().world_size(), 3);
  EXPECT_EQ(begun.engines(1).address(), addresses_[1]);

  ::colo::v1::FinishWeightSyncRequest finish;
  finish.set_step(1);
  grpc::Status refused = stub_->FinishWeightSync(Context().get(), finish, &transition);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  finish.set_trainer_weights_freed(true);
  ASSERT_TRUE(stub_->FinishWeightSync(Context().get(), finish, &transition).ok());
  EXPECT_EQ(transition.state().phase(), ::colo::v1::ROLLOUT);

  ::colo::v1::GetStateRequest get;
  get.set_include_memory(true);
  ::colo::v1::NodeState state;
  ASSERT_TRUE(stub_->GetState(Context().get(), get, &state).ok());
  ASSERT_EQ(state.engines_size(), 2);
  EXPECT_EQ(state.engines(0).memory().tags_size(), 3);
  EXPECT_GE(state.recent_phases_size(), 6);
  ::colo::v1::ListEnginesResponse engines;
  ASSERT_TRUE(stub_->ListEngines(Context().get(), {}, &engines).ok());
  EXPECT_EQ(engines.engines(0).engine_state(), "serving");
}

TEST_F(ControllerServiceTest, MutatingCallsNeedTheToken) {
  Start(1, NoHealth(), "t0ken");
  ::colo::v1::PrepareTrainingRequest prepare;
  prepare.set_step(1);
  ::colo::v1::TransitionResponse transition;
  EXPECT_EQ(stub_->PrepareTraining(Context().get(), prepare, &transition).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(stub_->PrepareTraining(Context("wrong").get(), prepare, &transition).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  ::colo::v1::FanOutResponse fan;
  ::colo::v1::PauseGenerationRequest pause;
  pause.set_mode("abort");
  EXPECT_EQ(stub_->PauseGeneration(Context().get(), pause, &fan).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_FALSE(fakes_[0]->paused());
  // Reads stay open.
  ::colo::v1::NodeState state;
  EXPECT_TRUE(stub_->GetState(Context().get(), {}, &state).ok());
  EXPECT_TRUE(stub_->PrepareTraining(Context("t0ken").get(), prepare, &transition).ok());
  EXPECT_EQ(transition.state().phase(), ::colo::v1::TRAINING);
}

TEST_F(ControllerServiceTest, FanOutValidatesAndReportsPerEngine) {
  Start(2, NoHealth());
  ::colo::v1::FanOutResponse fan;
  ::colo::v1::ReleaseTagsRequest bad;
  bad.add_tags("everything");
  EXPECT_EQ(stub_->ReleaseTags(Context().get(), bad, &fan).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  ::colo::v1::PauseGenerationRequest pause;
  pause.set_mode("in_place");
  ASSERT_TRUE(stub_->PauseGeneration(Context().get(), pause, &fan).ok());
  ASSERT_EQ(fan.results_size(), 2);
  EXPECT_EQ(fan.results(1).code(), 0);
  EXPECT_EQ(fan.results(1).pause().mode(), "in_place");
  ::colo::v1::ContinueGenerationRequest cont;
  cont.set_torch_empty_cache(false);
  ASSERT_TRUE(stub_->ContinueGeneration(Context().get(), cont, &fan).ok());
  EXPECT_THAT(fakes_[0]->calls(), ::testing::Contains("ContinueGeneration(keep)"));
}

TEST_F(ControllerServiceTest, UnimplementedEngineFailsTheNodeWithAReason) {
  Start(2, NoHealth(), "", /*unimplemented_index=*/1);
  ::colo::v1::PrepareTrainingRequest prepare;
  prepare.set_step(1);
  ::colo::v1::TransitionResponse transition;
  grpc::Status status = stub_->PrepareTraining(Context().get(), prepare, &transition);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  EXPECT_THAT(status.error_message(), HasSubstr(addresses_[1]));
  ::colo::v1::NodeState state;
  ASSERT_TRUE(stub_->GetState(Context().get(), {}, &state).ok());
  EXPECT_EQ(state.phase(), ::colo::v1::FAILED);
  EXPECT_THAT(state.reason(), AllOf(HasSubstr(addresses_[1]), HasSubstr("PauseGeneration"),
                                    HasSubstr("UNIMPLEMENTED")));
}

TEST_F(ControllerServiceTest, WatchStreamsPhaseChanges) {
  Start(1, NoHealth());
  auto watch_context = Context();
  auto reader = stub_->Watch(watch_context.get(), {});
  ::colo::v1::NodeState state;
  ASSERT_TRUE(reader->Read(&state));
  EXPECT_EQ(state.phase(), ::colo::v1::ROLLOUT);
  ::colo::v1::PrepareTrainingRequest prepare;
  prepare.set_step(4);
  ::colo::v1::TransitionResponse transition;
  ASSERT_TRUE(stub_->PrepareTraining(Context().get(), prepare, &transition).ok());
  std::vector<::colo::v1::Phase> seen;
  while (reader->Read(&state)) {
    seen.push_back(state.phase());
    if (state.phase() == ::colo::v1::TRAINING) break;
  }
  EXPECT_THAT(seen, ::testing::Contains(::colo::v1::TRAINING));
  EXPECT_EQ(state.step(), 4);
  // The stream ends when the controller shuts down.
  impl_->Shutdown();
  while (reader->Read(&state)) {
  }
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(ControllerServiceTest, HangingEngineLostDuringACallGivesUnavailable) {
  ControllerImpl::Options options;
  options.health_interval = absl::Milliseconds(20);
  Start(2, options);
  fakes_[1]->SetHang(true);
  ::colo::v1::PrepareTrainingRequest prepare;
  prepare.set_step(1);
  ::colo::v1::TransitionResponse transition;
  grpc::Status status = stub_->PrepareTraining(Context().get(), prepare, &transition);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(addresses_[1] + " lost"));
  fakes_[1]->SetHang(false);
}

TEST_F(ControllerServiceTest, StoppedEngineFailsTheNode) {
  ControllerImpl::Options options;
  options.health_interval = absl::Milliseconds(20);
  Start(2, options);
  engine_servers_[0]->Shutdown();
  auto watch_context = Context();
  auto reader = stub_->Watch(watch_context.get(), {});
  ::colo::v1::NodeState state;
  bool failed = false;
  while (reader->Read(&state)) {
    if (state.phase() == ::colo::v1::FAILED) {
      failed = true;
      break;
    }
  }
  ASSERT_TRUE(failed);
  EXPECT_THAT(state.reason(), HasSubstr(addresses_[0] + " lost"));
  watch_context->TryCancel();
}

}  // namespace
}  // namespace controller
}  // namespace colo
