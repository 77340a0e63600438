#include "kvcache/page_allocator.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::kvcache {
namespace {

using ::testing::HasSubstr;

PageAllocator Make(int32_t pages) {
  auto a = PageAllocator::Create({.num_pages = pages, .name = "full"});
  EXPECT_TRUE(a.ok()) << a.status();
  return *std::move(a);
}

TEST(PageAllocatorTest, RejectsTooFewPages) {
  EXPECT_THAT(PageAllocator::Create({.num_pages = 1}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PageAllocatorTest, NeverHandsOutPaddingPage) {
  PageAllocator a = Make(8);
  std::vector<int32_t> pages;
  ASSERT_OK(a.Allocate(7, &pages));
  EXPECT_EQ(pages.size(), 7u);
  for (int32_t p : pages) EXPECT_NE(p, 0);
  EXPECT_EQ(a.num_free(), 0);
}

TEST(PageAllocatorTest, AllocateFailsWhenExhaustedWithoutChangingState) {
  PageAllocator a = Make(4);
  std::vector<int32_t> pages;
  EXPECT_THAT(a.Allocate(4, &pages),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("need 4 pages, 3 free of 3")));
  EXPECT_TRUE(pages.empty());
  EXPECT_EQ(a.num_free(), 3);
}

TEST(PageAllocatorTest, FreeRejectsDoubleFreeDuplicatesAndPadding) {
  PageAllocator a = Make(8);
  std::vector<int32_t> pages;
  ASSERT_OK(a.Allocate(3, &pages));
  EXPECT_THAT(a.Free({pages[0], pages[0]}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("repeated")));
  EXPECT_THAT(a.Free({0}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(a.Free({8}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(a.num_free(), 4);  // Unchanged by the rejected calls.
  ASSERT_OK(a.Free({pages[1]}));
  EXPECT_THAT(a.Free({pages[2], pages[1]}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("double free")));
  EXPECT_TRUE(a.IsAllocated(pages[2]));
  EXPECT_EQ(a.num_free(), 5);
  a.Reset();
  EXPECT_EQ(a.num_free(), 7);
}

}  // namespace
}  // namespace colo::kvcache
