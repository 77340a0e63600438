#include "weight_sync/tcp_store.h"

#include <memory>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<TcpStoreServer> StartServer(int world_size) {
  TcpStoreServer::Options o;
  o.group_name = "g";
  o.world_size = world_size;
  absl::StatusOr<std::unique_ptr<TcpStoreServer>> s = TcpStoreServer::Start(o);
  EXPECT_OK(s.status());
  return std::move(s).value();
}

TcpStoreClient::Options ClientOptions(int port, int rank, int world_size) {
  TcpStoreClient::Options o;
  o.master_address = "127.0.0.1";
  o.master_port = port;
  o.group_name = "g";
  o.rank = rank;
  o.world_size = world_size;
  o.deadline = absl::Now() + absl::Seconds(10);
  return o;
}

TEST(TcpStoreTest, JoinSetGetAcrossClients) {
  auto server = StartServer(3);
  ASSERT_GT(server->port(), 0);
  ASSERT_OK_AND_ASSIGN(auto c1, TcpStoreClient::Connect(ClientOptions(server->port(), 1, 3)));
  ASSERT_OK_AND_ASSIGN(auto c2, TcpStoreClient::Connect(ClientOptions(server->port(), 2, 3)));
  EXPECT_EQ(c1->local_address(), "127.0.0.1");
  ASSERT_OK(server->WaitForJoins(absl::Now() + absl::Seconds(5)));

  // A Get that waits for a later Set from another client.
  std::thread getter([&] {
    absl::StatusOr<std::string> v = c2->Get("k", absl::Now() + absl::Seconds(10));
    EXPECT_OK(v.status());
    if (v.ok()) {
      EXPECT_EQ(*v, std::string("v\0x", 3));
    }
  });
  ASSERT_OK(c1->Set("k", std::string("v\0x", 3)));
  getter.join();
  ASSERT_OK(server->Set("from0", "zero"));
  ASSERT_OK_AND_ASSIGN(std::string v, c1->Get("from0", absl::Now() + absl::Seconds(1)));
  EXPECT_EQ(v, "zero");
}

TEST(TcpStoreTest, GetTimesOut) {
  auto server = StartServer(2);
  ASSERT_OK_AND_ASSIGN(auto c1, TcpStoreClient::Connect(ClientOptions(server->port(), 1, 2)));
  const absl::Time start = absl::Now();
  EXPECT_THAT(c1->Get("never", absl::Now() + absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("never")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(TcpStoreTest, RejectsMismatchedJoins) {
  auto server = StartServer(3);
  // World size mismatch.
  EXPECT_THAT(TcpStoreClient::Connect(ClientOptions(server->port(), 1, 4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("world_size 4")));
  // Rank 0 belongs to the master; rank 3 is outside the world.
  EXPECT_THAT(TcpStoreClient::Connect(ClientOptions(server->port(), 0, 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(TcpStoreClient::Connect(ClientOptions(server->port(), 3, 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  // Duplicate rank.
  ASSERT_OK_AND_ASSIGN(auto c1, TcpStoreClient::Connect(ClientOptions(server->port(), 1, 3)));
  EXPECT_THAT(TcpStoreClient::Connect(ClientOptions(server->port(), 1, 3)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("already joined")));
  // Wrong group name.
  TcpStoreClient::Options other = ClientOptions(server->port(), 2, 3);
  other.group_name = "other";
  EXPECT_THAT(TcpStoreClient::Connect(other),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"other\"")));
  // The master reports the missing rank and the rejections.
  EXPECT_THAT(server->WaitForJoins(absl::Now() + absl::Milliseconds(100)),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       ::testing::AllOf(HasSubstr("[2]"), HasSubstr("world_size 4"))));
}

TEST(TcpStoreTest, UnreachableMasterFailsWithinDeadline) {
  // Take a free port and close it again so nothing listens there.
  int port = 0;
  {
    auto server = StartServer(2);
    port = server->port();
  }
  TcpStoreClient::Options o = ClientOptions(port, 1, 2);
  const absl::Time start = absl::Now();
  o.deadline = start + absl::Milliseconds(500);
  EXPECT_THAT(TcpStoreClient::Connect(o),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr(absl::StrCat("127.0.0.1:", port))));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Seconds(2));
}

TEST(TcpStoreTest, ServerShutdownUnblocksWaiters) {
  auto server = StartServer(2);
  ASSERT_OK_AND_ASSIGN(auto c1, TcpStoreClient::Connect(ClientOptions(server->port(), 1, 2)));
  std::thread getter([&] {
    EXPECT_FALSE(c1->Get("never", absl::Now() + absl::Seconds(30)).ok());
  });
  // Destroying the server must not wait for the 30 s Get.
  const absl::Time start = absl::Now();
  server.reset();
  getter.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
