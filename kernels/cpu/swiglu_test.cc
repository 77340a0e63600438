#include "kernels/cpu/swiglu.h"

#include <algorithm>
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

// gpt-oss: interleaved gate/up, gate clamped above, up clamped both sides,
// (up + 1) * gate * sigmoid(alpha * gate). Sizes around the 16-lane tail.
TEST(SwiGluTest, ClampedInterleavedMatchesTransformersFormula) {
  const float alpha = 1.702f, limit = 7.0f;
  for (int64_t inter : {1, 7, 8, 15, 16, 17, 33, 100}) {
    const int64_t tokens = 3;
    std::vector<float> gu(tokens * 2 * inter), out(tokens * inter, -1.0f);
    for (size_t i = 0; i < gu.size(); ++i) gu[i] = -11.0f + 0.73f * static_cast<float>(i % 31);
    ClampedSwiGluInterleaved(gu.data(), tokens, inter, alpha, limit, out.data());
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < inter; ++i) {
        double g = std::min<double>(gu[t * 2 * inter + 2 * i], limit);
        double u = std::max<double>(std::min<double>(gu[t * 2 * inter + 2 * i + 1], limit), -limit);
        double ref = (u + 1) * g / (1 + std::exp(-alpha * g));
        ASSERT_NEAR(out[t * inter + i], ref, 1e-6 * (1 + std::abs(ref)))
            << "inter " << inter << " t " << t << " i " << i;
      }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace colo
