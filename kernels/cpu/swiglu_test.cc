#include "kernels/cpu/swiglu.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

TEST(SwiGluTest, MatchesNaiveReference) {
  const int64_t tokens = 2, inter = 5;
  std::vector<float> gu(tokens * 2 * inter), out(tokens * inter);
  for (size_t i = 0; i < gu.size(); ++i) gu[i] = 0.37f * i - 3.0f;
  SwiGlu(gu.data(), tokens, inter, out.data());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < inter; ++i) {
      double g = gu[t * 2 * inter + i], u = gu[t * 2 * inter + inter + i];
      EXPECT_NEAR(out[t * inter + i], g / (1 + std::exp(-g)) * u, 1e-5);
    }
}

}  // namespace
}  // namespace kernels
}  // namespace colo
