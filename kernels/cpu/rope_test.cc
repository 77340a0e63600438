#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

TEST(RopeTest, RotatesHalvesLikeTheReference) {
  const int head_dim = 8, heads = 2;
  auto inv = RopeInverseFrequencies(head_dim, 10000.0, RopeScaling());
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_DOUBLE_EQ(inv[0], 1.0);
  EXPECT_NEAR(inv[1], std::pow(10000.0, -2.0 / 8), 1e-12);
  std::vector<int64_t> pos = {0, 5};
  std::vector<float> c(2 * 4), s(2 * 4);
  RopeCosSin(inv, pos.data(), 2, c.data(), s.data());
  std::vector<float> x(2 * heads * head_dim);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1f * i - 1.0f;
  std::vector<float> y = x;
  ApplyRope(y.data(), 2, heads, head_dim, c.data(), s.data());
  for (int t = 0; t < 2; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < 4; ++i) {
        const float* xv = &x[(t * heads + h) * head_dim];
        const float* yv = &y[(t * heads + h) * head_dim];
        double a = pos[t] * inv[i];
        EXPECT_NEAR(yv[i], xv[i] * std::cos(a) - xv[i + 4] * std::sin(a), 1e-5);
        EXPECT_NEAR(yv[i + 4], xv[i + 4] * std::cos(a) + xv[i] * std::sin(a), 1e-5);
      }
  // Position 0 is the identity.
  for (int i = 0; i < heads * head_dim; ++i) EXPECT_FLOAT_EQ(y[i], x[i]);
}

TEST(RopeTest, Llama3ScalingFollowsThePiecewiseRule) {
  RopeScaling s;
  s.type = RopeScaling::Type::kLlama3;
  s.factor = 8;
  s.low_freq_factor = 1;
  s.high_freq_factor = 4;
  s.original_max_position_embeddings = 8192;
  const int d = 128;
  auto base = RopeInverseFrequencies(d, 500000.0, RopeScaling());
  auto scaled = RopeInverseFrequencies(d, 500000.0, s);
  int high = 0, low = 0, mid = 0;
  for (int i = 0; i < d / 2; ++i) {
    double wavelen = 2 * M_PI / base[i];
    if (wavelen < 8192 / 4.0) {
      EXPECT_DOUBLE_EQ(scaled[i], base[i]);
      ++high;
    } else if (wavelen > 8192 / 1.0) {
      EXPECT_NEAR(scaled[i], base[i] / 8, 1e-15);
      ++low;
    } else {
      double smooth = (8192 / wavelen - 1) / 3;
      EXPECT_NEAR(scaled[i], (1 - smooth) * base[i] / 8 + smooth * base[i], 1e-15);
      ++mid;
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
}

TEST(RopeTest, LinearScalingDividesFrequencies) {
  RopeScaling s;
  s.type = RopeScaling::Type::kLinear;
  s.factor = 4;
  auto base = RopeInverseFrequencies(16, 10000.0, RopeScaling());
  auto scaled = RopeInverseFrequencies(16, 10000.0, s);
  for (size_t i = 0; i < base.size(); ++i) EXPECT_DOUBLE_EQ(scaled[i], base[i] / 4);
}


// Reference values: transformers 5.25 ROPE_INIT_FUNCTIONS["yarn"] (float32)
// for head_dim 16, theta 150000, factor 32, beta_fast 32, beta_slow 1,
// original_max_position_embeddings 4096 (the gpt-oss parameters).
TEST(RopeTest, YarnMatchesTransformers) {
  RopeScaling s;
  s.type = RopeScaling::Type::kYarn;
  s.factor = 32;
  s.beta_fast = 32;
  s.beta_slow = 1;
  s.original_max_position_embeddings = 4096;
  s.truncate = false;
  const std::vector<double> want_no_truncate = {1, 0.225418001, 0.0508132726, 0.00679495931,
                                                0.000456483918, 1.8188337e-05, 4.09997847e-06,
                                                9.24208962e-07};
  std::vector<double> got = RopeInverseFrequencies(16, 150000.0, s);
  ASSERT_EQ(got.size(), want_no_truncate.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want_no_truncate[i], 2e-7 * want_no_truncate[i]) << i;
  }
  s.truncate = true;
  const std::vector<double> want_truncate = {1, 0.225418001, 0.0508132726, 0.00775546534,
                                             0.000914454344, 1.8188337e-05, 4.09997847e-06,
                                             9.24208962e-07};
  got = RopeInverseFrequencies(16, 150000.0, s);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want_truncate[i], 2e-7 * want_truncate[i]) << i;
  }
  EXPECT_NEAR(RopeAttentionScaling(s), 1.3465735902799727, 1e-12);
  s.attention_factor = 0.5;
  EXPECT_DOUBLE_EQ(RopeAttentionScaling(s), 0.5);
  EXPECT_DOUBLE_EQ(RopeAttentionScaling(RopeScaling()), 1.0);
}

TEST(RopeTest, AttentionScalingMultipliesCosAndSin) {
  const std::vector<double> inv = {0.5, 0.01};
  const std::vector<int64_t> pos = {3};
  float c1[2], s1[2], c2[2], s2[2];
  RopeCosSin(inv, pos.data(), 1, c1, s1);
  RopeCosSin(inv, pos.data(), 1, c2, s2, 1.25);
  for (int i = 0; i < 2; ++i) {
    EXPECT_FLOAT_EQ(c2[i], c1[i] * 1.25f);
    EXPECT_FLOAT_EQ(s2[i], s1[i] * 1.25f);
  }
}

}  // namespace
}  // namespace kernels
}  // namespace colo
