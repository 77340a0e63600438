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

// Gates across the whole float range the model can produce (the AVX-512
// path uses its own exp), inter not a multiple of 16, relative error.
TEST(SwiGluTest, MatchesReferenceOverWideRange) {
  const int64_t tokens = 3, inter = 1000 + 7;
  std::vector<float> gu(tokens * 2 * inter), out(tokens * inter);
  for (size_t i = 0; i < gu.size(); ++i) {
    gu[i] = -120.0f + 240.0f * static_cast<float>(i % 977) / 976.0f;  // gates
    if ((i / inter) % 2 == 1) gu[i] = 0.5f + 0.001f * (i % 13);       // ups
  }
  SwiGlu(gu.data(), tokens, inter, out.data());
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < inter; ++i) {
      double g = gu[t * 2 * inter + i], u = gu[t * 2 * inter + inter + i];
      double ref = g / (1 + std::exp(-g)) * u;
      ASSERT_NEAR(out[t * inter + i], ref, 4e-7 * std::abs(ref) + 1e-30)
          << "g " << g << " u " << u;
    }
}

}  // namespace
}  // namespace kernels
}  // namespace colo
