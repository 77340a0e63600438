#include "weight_sync/group_registry.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace weight_sync {
namespace {

using ::testing::HasSubstr;

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

}  // namespace
}  // namespace weight_sync
}  // namespace colo
