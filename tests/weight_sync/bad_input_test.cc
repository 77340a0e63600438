// Bad input to the weight-update RPCs of a real colo-engine: clear errors,
// never a hang past the deadline, and the engine keeps serving.
//   - world_size / rank mismatches: INVALID_ARGUMENT;
//   - an unreachable master: DEADLINE_EXCEEDED within the init deadline;
//   - a second group with the same name: ALREADY_EXISTS;
//   - an update while the weights are released: FAILED_PRECONDITION (every
//     update RPC). (While requests run: update_while_generating_test.)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"
#include "weight_sync/sender.h"
#include "weight_sync/tcp_store.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

// A loopback port nothing listens on (bound, then closed).
int UnusedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ckpt_, MakeCheckpoints());
    ASSERT_OK_AND_ASSIGN(engine_, StartEngine(ckpt_.a, kVersionA));
    ASSERT_OK_AND_ASSIGN(outputs_a_, GreedyOutputs(*engine_));
  }

  // The engine still serves A and holds no group named `group`.
  void ExpectHealthyWithoutGroup(const std::string& group) {
    ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*engine_));
    EXPECT_EQ(out.tokens, outputs_a_.tokens);
    EXPECT_THAT(DestroyGroup(*engine_, group), StatusIs(absl::StatusCode::kNotFound));
  }

  Checkpoints ckpt_;
  std::unique_ptr<TestEngine> engine_;
  Outputs outputs_a_;
};

TEST_F(BadInputTest, RankOutsideWorldIsInvalidArgument) {
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  // rank_offset 2 in a world of 2; rank_offset 0 (the trainer's rank).
  EXPECT_THAT(InitGroup(*engine_, GroupRequest("g", port, 2, 2, absl::Seconds(30),
                                               absl::Seconds(30))).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(InitGroup(*engine_, GroupRequest("g", port, 0, 2, absl::Seconds(30),
                                               absl::Seconds(30))).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank_offset")));
  v1::InitWeightsUpdateGroupRequest bad_backend =
      GroupRequest("g", port, 1, 2, absl::Seconds(30), absl::Seconds(30));
  bad_backend.set_backend("mpi");
  EXPECT_THAT(InitGroup(*engine_, bad_backend).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mpi")));
  ExpectHealthyWithoutGroup("g");
}

// Issue 18: an empty master_address and negative timeouts are refused at
// once (not after the init timeout, not silently the default); unknown
// rendezvous / torch_group names too.
TEST_F(BadInputTest, EmptyAddressNegativeTimeoutsAndUnknownNamesAreInvalidArgument) {
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  const absl::Time start = absl::Now();
  v1::InitWeightsUpdateGroupRequest empty =
      GroupRequest("g_empty", port, 1, 2, absl::Seconds(30), absl::Seconds(30));
  empty.set_master_address("");
  EXPECT_THAT(InitGroup(*engine_, empty).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("master_address is empty")));
  empty.set_rendezvous("torch");
  EXPECT_THAT(InitGroup(*engine_, empty).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("master_address is empty")));
  v1::InitWeightsUpdateGroupRequest negative =
      GroupRequest("g_neg", port, 1, 2, absl::Seconds(30), absl::Seconds(30));
  negative.set_init_timeout_ms(-5);
  EXPECT_THAT(InitGroup(*engine_, negative).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("init_timeout_ms and transfer_timeout_ms must be >= 0")));
  negative.set_init_timeout_ms(1000);
  negative.set_transfer_timeout_ms(-1);
  EXPECT_THAT(InitGroup(*engine_, negative).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got 1000 and -1")));
  v1::InitWeightsUpdateGroupRequest names =
      GroupRequest("g_names", port, 1, 2, absl::Seconds(30), absl::Seconds(30));
  names.set_rendezvous("mpi");
  EXPECT_THAT(InitGroup(*engine_, names).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rendezvous must be")));
  names.set_rendezvous("torch");
  names.set_torch_group("galaxy");
  EXPECT_THAT(InitGroup(*engine_, names).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("torch_group must be")));
  // All refused before any rendezvous.
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  ExpectHealthyWithoutGroup("g_empty");
}

TEST_F(BadInputTest, NcclGroupOnACpuEngineIsFailedPrecondition) {
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  v1::InitWeightsUpdateGroupRequest nccl =
      GroupRequest("g_nccl", port, 1, 2, absl::Seconds(30), absl::Seconds(30));
  nccl.set_backend("nccl");
  // Refused before any rendezvous: no wait for the (absent) master.
  EXPECT_THAT(InitGroup(*engine_, nccl).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--device=cuda")));
  ExpectHealthyWithoutGroup("g_nccl");
}

TEST_F(BadInputTest, WorldSizeMismatchIsRejectedByTheMaster) {
  // The master (this process, rank 0) expects a world of 2; the engine says 3.
  weight_sync::TcpStoreServer::Options so;
  so.group_name = "g_world";
  so.world_size = 2;
  ASSERT_OK_AND_ASSIGN(auto server, weight_sync::TcpStoreServer::Start(so));
  const int port = server->port();
  weight_sync::TransportOptions to;
  to.group_name = "g_world";
  to.world_size = 2;
  to.master_port = port;
  to.init_timeout = absl::Seconds(3);
  absl::Status master;
  std::thread rank0([&] { master = weight_sync::CreateTransport(to, std::move(server)).status(); });
  const absl::Time start = absl::Now();
  absl::Status engine_status =
      InitGroup(*engine_, GroupRequest("g_world", port, 1, 3, absl::Seconds(3), absl::Seconds(3)))
          .status();
  rank0.join();
  EXPECT_THAT(engine_status, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("world")));
  // The master gives up at its own init deadline, naming the rejected join.
  EXPECT_THAT(master, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3) + absl::Seconds(10));
  ExpectHealthyWithoutGroup("g_world");
}

TEST_F(BadInputTest, UnreachableMasterFailsWithinInitDeadline) {
  const int port = UnusedPort();
  ASSERT_GT(port, 0);
  const absl::Duration kInit = absl::Milliseconds(1500);
  const absl::Time start = absl::Now();
  absl::Status s =
      InitGroup(*engine_, GroupRequest("g_unreachable", port, 1, 2, kInit, absl::Seconds(3)),
                absl::Seconds(60))
          .status();
  const absl::Duration took = absl::Now() - start;
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded,
                          HasSubstr(absl::StrCat("127.0.0.1:", port))));
  EXPECT_GE(took, kInit - absl::Milliseconds(100));  // it did retry until the deadline
  EXPECT_LT(took, kInit + absl::Seconds(5));
  ExpectHealthyWithoutGroup("g_unreachable");
  // The name was released: the group can be formed for real now.
  ASSERT_OK_AND_ASSIGN(auto t, FormGroup({engine_.get()}, "g_unreachable", absl::Seconds(30),
                                         absl::Seconds(30)));
  EXPECT_OK(DestroyGroup(*engine_, "g_unreachable"));
}

TEST_F(BadInputTest, SecondGroupWithSameNameIsAlreadyExists) {
  ASSERT_OK_AND_ASSIGN(auto t, FormGroup({engine_.get()}, "g_dup", absl::Seconds(30),
                                         absl::Seconds(30)));
  const absl::Time start = absl::Now();
  EXPECT_THAT(InitGroup(*engine_, GroupRequest("g_dup", t->master_port(), 1, 2,
                                               absl::Seconds(30), absl::Seconds(30)))
                  .status(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("g_dup")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // refused, not a rendezvous
  EXPECT_OK(DestroyGroup(*engine_, "g_dup"));
  EXPECT_THAT(DestroyGroup(*engine_, "g_dup"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(BadInputTest, UpdateWhileWeightsReleasedIsFailedPrecondition) {
  ASSERT_OK_AND_ASSIGN(auto b, engine::SafetensorsCheckpoint::Open(ckpt_.b));
  ASSERT_OK_AND_ASSIGN(Checksums sums_a, WeightChecksums(*engine_));
  ASSERT_OK(engine_->Pause("abort").status());
  ASSERT_OK(engine_->Release({"weights"}).status());
  for (const absl::Status& st : TryAllUpdates(*engine_, ckpt_.b, *b, kVersionB)) {
    EXPECT_THAT(st, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("weights")));
  }
  ASSERT_OK_AND_ASSIGN(auto info, engine_->Info());
  EXPECT_EQ(info.weight_version(), kVersionA);
  // Resumed weights take the update; generation serves it after Continue.
  ASSERT_OK(engine_->Resume({"weights"}).status());
  ASSERT_OK(UpdateFromDisk(*engine_, ckpt_.b, kVersionB).status());
  ASSERT_OK(engine_->Continue(true).status());
  ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*engine_));
  EXPECT_THAT(out.versions, ::testing::Each(std::string(kVersionB)));
  EXPECT_NE(out.tokens, outputs_a_.tokens);
  ASSERT_OK_AND_ASSIGN(Checksums sums_b, WeightChecksums(*engine_));
  EXPECT_NE(sums_b.crc, sums_a.crc);
}

}  // namespace
}  // namespace colo::test_util
