// GlooMesh among in-process ranks (both wires): full-mesh setup through a
// store, gloo's binomial broadcast (forwarding ranks included), discarding
// receivers, size mismatches, dead peers and deadlines. Compatibility with
// real torch processes is tested in tests/weight_sync (torch_group_test).
#include "weight_sync/gloo_wire.h"

#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/tcp_store.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<TcpStoreServer> Store(int world) {
  TcpStoreServer::Options o;
  o.group_name = "g";
  o.world_size = world;
  auto s = TcpStoreServer::Start(o);
  EXPECT_OK(s.status());
  return std::move(s).value();
}

// Connects `n` ranks concurrently; returns the meshes (index = rank).
std::vector<std::unique_ptr<GlooMesh>> ConnectAll(RendezvousStore* store, int n, GlooWire wire,
                                                  const std::string& prefix = "/pg/") {
  std::vector<std::unique_ptr<GlooMesh>> meshes(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      GlooMeshOptions o;
      o.wire = wire;
      o.rank = r;
      o.size = n;
      o.key_prefix = prefix;
      o.deadline = absl::Now() + absl::Seconds(20);
      auto m = GlooMesh::Connect(store, o);
      EXPECT_OK(m.status()) << "rank " << r;
      if (m.ok()) meshes[r] = std::move(m).value();
    });
  }
  for (std::thread& t : threads) t.join();
  return meshes;
}

// Runs fn(rank) on every rank concurrently and returns the statuses.
std::vector<absl::Status> OnEveryRank(int n, const std::function<absl::Status(int)>& fn) {
  std::vector<absl::Status> out(n);
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) threads.emplace_back([&, r] { out[r] = fn(r); });
  for (std::thread& t : threads) t.join();
  return out;
}

class GlooMeshTest : public ::testing::TestWithParam<GlooWire> {};

TEST_P(GlooMeshTest, BroadcastsReachEveryRankThroughTheTree) {
  for (int n : {2, 3, 5}) {
    auto store = Store(n);
    auto meshes = ConnectAll(store.get(), n, GetParam());
    ASSERT_TRUE(meshes.back() != nullptr);
    // Sizes around the scratch size; a zero-byte broadcast; varied roots.
    const std::vector<size_t> sizes = {1, 4096, (size_t{1} << 20) + 3, 0, 3 << 20};
    for (int root : {0, n - 1}) {
      std::vector<std::vector<uint8_t>> bufs(n);
      auto statuses = OnEveryRank(n, [&](int r) {
        uint32_t tag = 0;
        for (size_t bytes : sizes) {
          bufs[r].assign(bytes, 0);
          if (r == root) {
            for (size_t i = 0; i < bytes; ++i) bufs[r][i] = static_cast<uint8_t>(i * 7 + bytes);
          }
          absl::Status st = meshes[r]->Broadcast(bufs[r].data(), bytes, root, tag++,
                                                 absl::Now() + absl::Seconds(20));
          if (!st.ok()) return st;
          for (size_t i = 0; i < bytes; ++i) {
            if (bufs[r][i] != static_cast<uint8_t>(i * 7 + bytes)) {
              return absl::InternalError("wrong byte");
            }
          }
        }
        return absl::OkStatus();
      });
      for (int r = 0; r < n; ++r) EXPECT_OK(statuses[r]) << "n=" << n << " rank " << r;
    }
  }
}

TEST_P(GlooMeshTest, DiscardingRanksStillForward) {
  const int n = 5;  // rank 1 forwards to rank 3 (binomial tree from 0)
  auto store = Store(n);
  auto meshes = ConnectAll(store.get(), n, GetParam());
  ASSERT_TRUE(meshes[0] != nullptr);
  std::vector<std::vector<float>> bufs(n, std::vector<float>(1000, 0.f));
  std::iota(bufs[0].begin(), bufs[0].end(), 1.f);
  auto statuses = OnEveryRank(n, [&](int r) {
    void* dst = (r == 1 || r == 2) ? nullptr : bufs[r].data();
    return meshes[r]->Broadcast(dst, 4000, 0, 0, absl::Now() + absl::Seconds(20));
  });
  for (int r = 0; r < n; ++r) EXPECT_OK(statuses[r]);
  EXPECT_EQ(bufs[3], bufs[0]);
  EXPECT_EQ(bufs[4], bufs[0]);
}

TEST_P(GlooMeshTest, SizeMismatchIsInvalidArgumentAndBreaksTheMesh) {
  auto store = Store(2);
  auto meshes = ConnectAll(store.get(), 2, GetParam());
  ASSERT_TRUE(meshes[1] != nullptr);
  std::vector<uint8_t> a(64, 1), b(32, 0);
  auto statuses = OnEveryRank(2, [&](int r) {
    if (r == 0) return meshes[0]->Broadcast(a.data(), a.size(), 0, 0, absl::Now() + absl::Seconds(3));
    return meshes[1]->Broadcast(b.data(), b.size(), 0, 0, absl::Now() + absl::Seconds(20));
  });
  EXPECT_THAT(statuses[1], StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("broadcast 64 bytes where this rank expected 32")));
  EXPECT_TRUE(meshes[1]->broken());
  EXPECT_THAT(meshes[1]->Broadcast(b.data(), 32, 0, 1, absl::Now() + absl::Seconds(1)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("broken")));
}

TEST_P(GlooMeshTest, DeadPeerFailsTheBroadcastInsteadOfHanging) {
  auto store = Store(3);
  auto meshes = ConnectAll(store.get(), 3, GetParam());
  ASSERT_TRUE(meshes[2] != nullptr);
  meshes[0]->Close();  // the root goes away before broadcasting
  std::vector<uint8_t> buf(16);
  const absl::Time start = absl::Now();
  absl::Status st = meshes[2]->Broadcast(buf.data(), buf.size(), 0, 0,
                                         absl::Now() + absl::Seconds(60));
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kAborted, HasSubstr("rank 0")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
}

TEST_P(GlooMeshTest, SilentRootEndsAtTheDeadline) {
  auto store = Store(2);
  auto meshes = ConnectAll(store.get(), 2, GetParam());
  ASSERT_TRUE(meshes[1] != nullptr);
  std::vector<uint8_t> buf(16);
  EXPECT_THAT(meshes[1]->Broadcast(buf.data(), buf.size(), 0, 0,
                                   absl::Now() + absl::Milliseconds(200)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("transfer timeout")));
  EXPECT_TRUE(meshes[1]->broken());
}

TEST_P(GlooMeshTest, MissingPeerEndsTheConnectAtTheDeadline) {
  auto store = Store(2);
  GlooMeshOptions o;
  o.wire = GetParam();
  o.rank = 1;
  o.size = 2;
  o.key_prefix = "/pg/";
  o.deadline = absl::Now() + absl::Milliseconds(300);
  EXPECT_THAT(GlooMesh::Connect(store.get(), o).status(),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("address of rank 0")));
}

INSTANTIATE_TEST_SUITE_P(Wires, GlooMeshTest,
                         ::testing::Values(GlooWire::kCurrent, GlooWire::kLegacy),
                         [](const ::testing::TestParamInfo<GlooWire>& info) {
                           return info.param == GlooWire::kCurrent ? "Current" : "Legacy";
                         });

TEST(GlooBroadcastSlotTest, MatchesGloo) {
  // Observed on the wire from torch 2.15 and 1.13: tags 0 and 1.
  EXPECT_EQ(GlooBroadcastSlot(0), 0x0600000000000000ull);
  EXPECT_EQ(GlooBroadcastSlot(1), 0x0600000001000000ull);
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
