#include "weight_sync/group_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

// A transport whose broken() the test controls (no sockets).
class FakeTransport : public Transport {
 public:
  explicit FakeTransport(const TransportOptions& o) : options_(o) {}
  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  const std::string& backend() const override { return options_.backend; }
  MemorySpace memory_space() const override { return MemorySpace::kHost; }
  int master_port() const override { return 0; }
  absl::Status Broadcast(void*, size_t, int) override { return absl::OkStatus(); }
  absl::StatusOr<int32_t> AllReduceMin(int32_t v) override { return v; }
  absl::Status Barrier() override { return absl::OkStatus(); }
  void Close() override { closed = true; }
  bool broken() const override { return broken_flag; }
  std::string rendezvous() const override { return options_.rendezvous; }
  bool broken_flag = false;
  bool closed = false;

 private:
  TransportOptions options_;
};

absl::StatusOr<std::unique_ptr<Transport>> MakeFake(const TransportOptions& o,
                                                    std::unique_ptr<TcpStoreServer>) {
  return std::unique_ptr<Transport>(new FakeTransport(o));
}

TransportOptions Solo(const std::string& name) {
  TransportOptions o;
  o.group_name = name;
  o.world_size = 1;  // rank 0 alone: forms at once over real Gloo
  o.rank = 0;
  return o;
}

TEST(GroupRegistryTest, DuplicateNameAndUnknownDestroy) {
  GroupRegistry registry;
  ASSERT_OK_AND_ASSIGN(auto g, registry.Create(Solo("a")));
  EXPECT_EQ(g->world_size(), 1);
  EXPECT_THAT(registry.Create(Solo("a")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("\"a\"")));
  ASSERT_OK_AND_ASSIGN(auto b, registry.Create(Solo("b")));
  EXPECT_EQ(registry.size(), 2u);
  ASSERT_OK_AND_ASSIGN(auto got, registry.Get("a"));
  EXPECT_EQ(got.get(), g.get());
  EXPECT_THAT(registry.Destroy("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry.Get("nope"), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_OK(registry.Destroy("a"));
  EXPECT_THAT(registry.Destroy("a"), StatusIs(absl::StatusCode::kNotFound));
  // The name is free again.
  EXPECT_OK(registry.Create(Solo("a")).status());
}

TEST(GroupRegistryTest, FailedCreateFreesTheName) {
  GroupRegistry registry;
  TransportOptions bad = Solo("x");
  bad.backend = "nope";
  EXPECT_THAT(registry.Create(bad), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(registry.size(), 0u);
  EXPECT_OK(registry.Create(Solo("x")).status());
}

TEST(GroupRegistryTest, BrokenGroupIsReplacedAtOnce) {
  GroupRegistry registry(&MakeFake);
  ASSERT_OK_AND_ASSIGN(auto g, registry.Create(Solo("g")));
  EXPECT_THAT(registry.Create(Solo("g")), StatusIs(absl::StatusCode::kAlreadyExists));
  static_cast<FakeTransport*>(g.get())->broken_flag = true;
  ASSERT_OK_AND_ASSIGN(auto fresh, registry.Create(Solo("g")));
  EXPECT_NE(fresh.get(), g.get());
  EXPECT_EQ(registry.size(), 1u);
}

TEST(GroupRegistryTest, OneUpdateAtATimeAndListedStates) {
  GroupRegistry registry(&MakeFake);
  TransportOptions torch = Solo("t");
  torch.rendezvous = "torch";
  ASSERT_OK_AND_ASSIGN(auto g, registry.Create(torch));
  ASSERT_OK_AND_ASSIGN(auto held, registry.Acquire("t", "UpdateWeightsFromDistributed"));
  EXPECT_THAT(registry.Acquire("t", "another update"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("in use by UpdateWeightsFromDistributed")));
  std::vector<GroupInfo> list = registry.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].state, "updating");
  EXPECT_EQ(list[0].options.rendezvous, "torch");
  registry.Release("t", held.get(), absl::AbortedError("peer died"));
  list = registry.List();
  EXPECT_EQ(list[0].state, "ready");
  EXPECT_EQ(list[0].updates, 0);
  EXPECT_EQ(list[0].last_error, "peer died");
  ASSERT_OK(registry.Acquire("t", "u").status());
  registry.Release("t", held.get(), absl::OkStatus());
  EXPECT_EQ(registry.List()[0].updates, 1);
  static_cast<FakeTransport*>(g.get())->broken_flag = true;
  EXPECT_EQ(registry.List()[0].state, "broken");
  // Destroying a torch group shuts it down at once.
  EXPECT_TRUE(registry.DestroyIfCurrent("t", g.get()));
  EXPECT_TRUE(static_cast<FakeTransport*>(g.get())->closed);
  EXPECT_FALSE(registry.DestroyIfCurrent("t", g.get()));
  EXPECT_EQ(registry.size(), 0u);
}

}  // namespace
}  // namespace weight_sync
}  // namespace colo
