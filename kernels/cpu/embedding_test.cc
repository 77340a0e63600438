#include "kernels/cpu/embedding.h"

#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

TEST(EmbeddingTest, GathersRowsAndRejectsOutOfRange) {
  std::vector<float> table(4 * 3);
  for (size_t i = 0; i < table.size(); ++i) table[i] = i;
  std::vector<int32_t> tokens = {2, 0, 3};
  std::vector<float> out(9, -1);
  ASSERT_TRUE(EmbeddingLookup(table.data(), 4, 3, tokens.data(), 3, out.data()));
  EXPECT_EQ(out, (std::vector<float>{6, 7, 8, 0, 1, 2, 9, 10, 11}));
  std::vector<int32_t> bad = {1, 4};
  std::vector<float> out2(6, -1);
  EXPECT_FALSE(EmbeddingLookup(table.data(), 4, 3, bad.data(), 2, out2.data()));
  EXPECT_EQ(out2, std::vector<float>(6, -1));
  std::vector<int32_t> neg = {-1};
  EXPECT_FALSE(EmbeddingLookup(table.data(), 4, 3, neg.data(), 1, out2.data()));
}

}  // namespace
}  // namespace kernels
}  // namespace colo
