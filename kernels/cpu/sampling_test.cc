#include "kernels/cpu/sampling.h"

#include <cmath>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

TEST(SamplingTest, GreedyPicksArgmaxWithLowestIndexOnTies) {
  std::vector<float> l = {1, 3, 3, 2};
  SampledToken t = SampleToken(l.data(), 4, SamplingParams(), 0);
  EXPECT_EQ(t.token, 1);
  double lse = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  EXPECT_NEAR(t.logprob, 3 - lse, 1e-6);
}

TEST(SamplingTest, LogSoftmaxMatchesReference) {
  std::vector<float> l = {0.5f, -2.0f, 100.0f, 99.0f}, out(4);
  LogSoftmax(l.data(), 4, out.data());
  double sum = 0;
  for (float x : out) sum += std::exp(double(x));
  EXPECT_NEAR(sum, 1.0, 1e-6);
  EXPECT_NEAR(out[2] - out[3], 1.0, 1e-5);
}

TEST(SamplingTest, TopKOneIsGreedyAndSeedIsDeterministic) {
  std::vector<float> l = {0.1f, 0.2f, 5.0f, 0.3f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 1;
  for (uint64_t step = 0; step < 20; ++step)
    EXPECT_EQ(SampleToken(l.data(), 4, p, step).token, 2);
  p.top_k = 0;
  p.seed = 42;
  EXPECT_EQ(SampleToken(l.data(), 4, p, 7).token, SampleToken(l.data(), 4, p, 7).token);
}

TEST(SamplingTest, FrequenciesFollowTemperatureSoftmax) {
  std::vector<float> l = {0.0f, 1.0f, 2.0f};
  SamplingParams p;
  p.temperature = 2.0f;
  p.seed = 1234;  // fixed seed
  std::map<int, int> counts;
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[SampleToken(l.data(), 3, p, i).token]++;
  double z = std::exp(0.0) + std::exp(0.5) + std::exp(1.0);
  for (int t = 0; t < 3; ++t)
    EXPECT_NEAR(counts[t] / double(n), std::exp(t / 2.0) / z, 0.02) << t;
}

TEST(SamplingTest, TopPKeepsSmallestMassReachingP) {
  // probs (T=1): ~0.665, 0.245, 0.090
  std::vector<float> l = {2.0f, 1.0f, 0.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.7f;
  p.seed = 99;
  std::map<int, int> counts;
  for (int i = 0; i < 5000; ++i) counts[SampleToken(l.data(), 3, p, i).token]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
  p.top_p = 0.5f;
  for (int i = 0; i < 100; ++i) EXPECT_EQ(SampleToken(l.data(), 3, p, i).token, 0);
}

TEST(SamplingTest, CounterUniformInRange) {
  for (uint64_t i = 0; i < 1000; ++i) {
    double u = CounterUniform(5, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  EXPECT_NE(CounterUniform(1, 0), CounterUniform(2, 0));
}

}  // namespace
}  // namespace kernels
}  // namespace colo
