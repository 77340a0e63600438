#include "weight_sync/gloo_transport.h"

#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/tcp_store.h"
#include "weight_sync/transport.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

TransportOptions Options(int rank, int world_size, int port) {
  TransportOptions o;
  o.backend = "gloo";
  o.group_name = "test_group";
  o.master_address = "127.0.0.1";
  o.master_port = port;
  o.rank = rank;
  o.world_size = world_size;
  o.init_timeout = absl::Seconds(20);
  o.transfer_timeout = absl::Seconds(20);
  return o;
}

std::unique_ptr<TcpStoreServer> StartServer(int world_size) {
  TcpStoreServer::Options so;
  so.group_name = "test_group";
  so.world_size = world_size;
  return std::move(TcpStoreServer::Start(so)).value();
}

// Forms a group of `world_size` ranks on threads; returns the transports.
std::vector<std::unique_ptr<Transport>> FormGroup(int world_size) {
  auto server = StartServer(world_size);
  const int port = server->port();
  std::vector<std::unique_ptr<Transport>> out(world_size);
  std::vector<absl::Status> status(world_size);
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      absl::StatusOr<std::unique_ptr<Transport>> t = CreateTransport(
          Options(r, world_size, port), r == 0 ? std::move(server) : nullptr);
      status[r] = t.status();
      if (t.ok()) out[r] = std::move(t).value();
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world_size; ++r) EXPECT_OK(status[r]) << "rank " << r;
  return out;
}

// Runs fn(rank) on one thread per rank and joins.
template <typename Fn>
void OnAllRanks(int world_size, Fn fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < world_size; ++r) threads.emplace_back([&fn, r] { fn(r); });
  for (auto& t : threads) t.join();
}

TEST(GlooTransportTest, BroadcastAllReduceBarrier) {
  constexpr int kWorld = 3;
  auto group = FormGroup(kWorld);
  ASSERT_EQ(group.size(), 3u);
  for (auto& t : group) ASSERT_NE(t, nullptr);
  EXPECT_GT(group[0]->master_port(), 0);
  for (size_t bytes : {size_t{1}, size_t{4093}, size_t{16} << 20}) {
    std::vector<std::vector<uint8_t>> bufs(kWorld, std::vector<uint8_t>(bytes, 0));
    for (size_t i = 0; i < bytes; ++i) bufs[0][i] = static_cast<uint8_t>(i * 7 + 3);
    std::vector<absl::Status> st(kWorld);
    OnAllRanks(kWorld, [&](int r) { st[r] = group[r]->Broadcast(bufs[r].data(), bytes, 0); });
    for (int r = 0; r < kWorld; ++r) {
      ASSERT_OK(st[r]);
      EXPECT_EQ(bufs[r], bufs[0]) << "rank " << r << " bytes " << bytes;
    }
  }
  std::vector<int32_t> mins(kWorld);
  OnAllRanks(kWorld, [&](int r) {
    absl::StatusOr<int32_t> m = group[r]->AllReduceMin(r == 1 ? -5 : 10 + r);
    mins[r] = m.ok() ? *m : 12345;
  });
  EXPECT_THAT(mins, ::testing::Each(-5));
  std::vector<absl::Status> st(kWorld);
  OnAllRanks(kWorld, [&](int r) { st[r] = group[r]->Barrier(); });
  for (auto& s : st) EXPECT_OK(s);
}

TEST(GlooTransportTest, DeadPeerAbortsWithinTransferTimeout) {
  constexpr int kWorld = 2;
  auto group = FormGroup(kWorld);
  // Rank 0 goes away: rank 1's broadcast must fail, not hang.
  group[0]->Close();
  std::vector<uint8_t> buf(1 << 20);
  const absl::Time start = absl::Now();
  EXPECT_THAT(group[1]->Broadcast(buf.data(), buf.size(), 0),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("broadcast")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(21));
  EXPECT_TRUE(group[1]->broken());
  EXPECT_THAT(group[1]->Barrier(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("re-create")));
}

TEST(GlooTransportTest, StalledPeerHitsTransferTimeout) {
  constexpr int kWorld = 2;
  auto server = StartServer(kWorld);
  const int port = server->port();
  std::unique_ptr<Transport> t0, t1;
  std::thread th([&] {
    TransportOptions o = Options(1, kWorld, port);
    o.transfer_timeout = absl::Milliseconds(300);
    t1 = std::move(CreateTransport(o)).value();
  });
  t0 = std::move(CreateTransport(Options(0, kWorld, port), std::move(server))).value();
  th.join();
  // Rank 0 never broadcasts; rank 1 gives up after its 300 ms timeout.
  std::vector<uint8_t> buf(1024);
  const absl::Time start = absl::Now();
  EXPECT_THAT(t1->Broadcast(buf.data(), buf.size(), 0),
              StatusIs(absl::StatusCode::kAborted));
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST(GlooTransportTest, UnreachableMasterFailsWithinInitTimeout) {
  int port;
  { port = StartServer(2)->port(); }  // a port nobody listens on any more
  TransportOptions o = Options(1, 2, port);
  o.init_timeout = absl::Milliseconds(700);
  const absl::Time start = absl::Now();
  EXPECT_THAT(CreateTransport(o),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("could not reach the rendezvous master")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST(GlooTransportTest, MasterReportsRanksThatNeverJoined) {
  TransportOptions o = Options(0, 3, 0);
  o.init_timeout = absl::Milliseconds(300);
  EXPECT_THAT(CreateTransport(o),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("[1, 2]")));
}

TEST(GlooTransportTest, WorldSizeMismatchIsInvalidArgument) {
  auto server = StartServer(2);
  TransportOptions o = Options(1, 3, server->port());
  o.init_timeout = absl::Seconds(5);
  EXPECT_THAT(CreateTransport(o),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("world_size 3")));
  EXPECT_THAT(CreateTransport(Options(5, 3, server->port())),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
}

TEST(TransportFactoryTest, BackendSelection) {
  TransportOptions o = Options(0, 1, 0);
  o.backend = "mpi";
  EXPECT_THAT(CreateTransport(o), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("\"mpi\"")));
  o.backend = "nccl";
#ifndef COLO_WITH_NCCL
  EXPECT_THAT(CreateTransport(o), StatusIs(absl::StatusCode::kFailedPrecondition,
                                           HasSubstr("--config=cuda")));
#else
  // NCCL is built in: it works with a GPU and refuses cleanly without one.
  if (absl::StatusOr<std::unique_ptr<Transport>> n = CreateTransport(o); !n.ok()) {
    EXPECT_THAT(n.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("no usable CUDA device")));
  }
#endif
  o.backend = "gloo";
  ASSERT_OK_AND_ASSIGN(auto solo, CreateTransport(o));
  std::vector<uint8_t> buf(10, 1);
  EXPECT_OK(solo->Broadcast(buf.data(), buf.size(), 0));
  EXPECT_THAT(solo->AllReduceMin(7), ::testing::Eq(absl::StatusOr<int32_t>(7)));
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
