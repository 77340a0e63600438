#include "controller/grpc_engine_client.h"

#include <thread>

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
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class GrpcEngineClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    address_ = "127.0.0.1:" + std::to_string(port_);
  }
  void TearDown() override {
    engine_.SetHang(false);
    server_->Shutdown();
  }

  FakeEngine engine_{{.address = "fake:1"}};
  FakeRolloutEngineService service_{&engine_};
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
};

TEST_F(GrpcEngineClientTest, CallsReachTheEngine) {
  ASSERT_OK_AND_ASSIGN(auto client, GrpcEngineClient::Create(ClientOptions(address_)));
  EXPECT_EQ(client->address(), address_);
  EXPECT_OK(client->Probe());
  ASSERT_OK(client->PauseGeneration("retract").status());
  ASSERT_OK_AND_ASSIGN(auto released, client->ReleaseTags({"kv_cache"}));
  ASSERT_EQ(released.tags_size(), 1);
  EXPECT_EQ(released.tags(0).bytes(), int64_t{40} << 30);
  ASSERT_OK_AND_ASSIGN(auto memory, client->GetMemoryInfo());
  EXPECT_EQ(memory.memory().device().kind(), "cuda");
  ASSERT_OK_AND_ASSIGN(auto info, client->GetServerInfo());
  EXPECT_THAT(info.released_tags(), ElementsAre("kv_cache"));
  ASSERT_OK(client->ResumeTags({"kv_cache"}).status());
  ASSERT_OK_AND_ASSIGN(auto continued, client->ContinueGeneration(false));
  EXPECT_EQ(continued.reserved_bytes_after(), continued.reserved_bytes_before());
  EXPECT_THAT(engine_.calls(), ::testing::Contains("ContinueGeneration(keep)"));
}

TEST_F(GrpcEngineClientTest, ErrorsNameTheEngineAndMethod) {
  ASSERT_OK_AND_ASSIGN(auto client, GrpcEngineClient::Create(ClientOptions(address_)));
  EXPECT_THAT(client->ReleaseTags({"kv_cache"}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       AllOf(HasSubstr(address_), HasSubstr("ReleaseTags"), HasSubstr("paused"))));
}

TEST_F(GrpcEngineClientTest, CallsHaveDeadlines) {
  ASSERT_OK_AND_ASSIGN(
      auto client, GrpcEngineClient::Create(
                       ClientOptions(address_, absl::Milliseconds(100), absl::Milliseconds(50))));
  engine_.SetHang(true);
  EXPECT_THAT(client->GetMemoryInfo(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  engine_.WaitUntilHanging();
  EXPECT_THAT(client->Probe(), StatusIs(absl::StatusCode::kDeadlineExceeded));
}

TEST_F(GrpcEngineClientTest, CancelPendingEndsCallsInFlight) {
  ASSERT_OK_AND_ASSIGN(auto client, GrpcEngineClient::Create(ClientOptions(address_)));
  engine_.SetHang(true);
  absl::Status status;
  std::thread caller([&] { status = client->GetMemoryInfo().status(); });
  engine_.WaitUntilHanging();
  client->CancelPending();
  caller.join();
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(GrpcEngineClientTest, UnreachableEngineIsUnavailable) {
  ASSERT_OK_AND_ASSIGN(auto client,
                       GrpcEngineClient::Create(ClientOptions("127.0.0.1:1", absl::Seconds(5))));
  EXPECT_THAT(client->GetServerInfo(),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("127.0.0.1:1")));
}

TEST(ParseEngineListTest, ParsesAndValidates) {
  ASSERT_OK_AND_ASSIGN(auto list, ParseEngineList("a:1, b:2"));
  EXPECT_THAT(list, ElementsAre("a:1", "b:2"));
  EXPECT_THAT(ParseEngineList(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseEngineList("a"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseEngineList("a:70000"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseEngineList("a:1,a:1"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(GrpcEngineClient::Create(ClientOptions("nohost")),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace controller
}  // namespace colo
