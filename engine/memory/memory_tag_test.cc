#include "engine/memory/memory_tag.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MemoryTagTest, NamesRoundTrip) {
  for (MemoryTag tag : AllMemoryTags()) {
    ASSERT_OK_AND_ASSIGN(MemoryTag parsed, ParseMemoryTag(MemoryTagName(tag)));
    EXPECT_EQ(parsed, tag);
  }
  EXPECT_EQ(MemoryTagName(MemoryTag::kKvCache), "kv_cache");
}

TEST(MemoryTagTest, UnknownTagNamesValidTags) {
  EXPECT_THAT(ParseMemoryTag("kv"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("weights, kv_cache, cuda_graph")));
  EXPECT_THAT(ParseMemoryTag(""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MemoryTagTest, EmptyListMeansAll) {
  ASSERT_OK_AND_ASSIGN(auto tags, ParseMemoryTags({}));
  EXPECT_THAT(tags, ElementsAre(MemoryTag::kCudaGraph, MemoryTag::kWeights,
                                MemoryTag::kKvCache));
}

TEST(MemoryTagTest, ListIsDedupedAndOrdered) {
  ASSERT_OK_AND_ASSIGN(auto tags,
                       ParseMemoryTags({"kv_cache", "weights", "kv_cache"}));
  EXPECT_THAT(tags, ElementsAre(MemoryTag::kWeights, MemoryTag::kKvCache));
}

TEST(MemoryTagTest, ListWithUnknownTagFails) {
  EXPECT_THAT(ParseMemoryTags({"weights", "activations"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'activations'")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
