// The GPU sampler's plan and algorithm on the CPU: the device RNG equals
// kernels::CounterUniform bit for bit, the radix-select helpers order keys
// like floats, and a sequential simulation of the device algorithm
// (SimulateDeviceSample) samples what kernels::SampleToken samples, flags
// exactly the rows it cannot finish on the device. Runs in CI (no GPU).
#include "kernels/cuda/sampling_plan.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/sampling.h"

namespace colo::kernels::cuda {
namespace {

TEST(SamplingPlanTest, DeviceRngEqualsTheCpuRng) {
  std::mt19937_64 rng(1);
  for (int i = 0; i < 100000; ++i) {
    const uint64_t seed = (i % 3 == 0) ? static_cast<uint64_t>(i) : rng();
    const uint64_t step = (i % 5 == 0) ? static_cast<uint64_t>(i % 17) : rng();
    ASSERT_EQ(CounterUniformHd(seed, step), kernels::CounterUniform(seed, step))
        << seed << " " << step;
  }
}

TEST(SamplingPlanTest, OrderedKeySortsLikeFloats) {
  std::vector<float> v = {-std::numeric_limits<float>::infinity(), -1e30f, -2.5f, -1.0f,
                          -1e-30f, 0.0f, 1e-30f, 1.0f, 2.5f, 1e30f,
                          std::numeric_limits<float>::infinity()};
  for (size_t i = 1; i < v.size(); ++i) {
    EXPECT_LT(OrderedKey(v[i - 1]), OrderedKey(v[i])) << v[i - 1] << " vs " << v[i];
  }
  EXPECT_EQ(OrderedKey(-0.0f), OrderedKey(0.0f));
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 100.0f);
  for (int i = 0; i < 10000; ++i) {
    const float a = nd(rng), b = nd(rng);
    EXPECT_EQ(a < b, OrderedKey(a) < OrderedKey(b));
    EXPECT_EQ(a == b, OrderedKey(a) == OrderedKey(b));
  }
}

TEST(SamplingPlanTest, RadixDigitsReassembleTheKey) {
  const uint32_t key = 0xA1B2C3D4u;
  EXPECT_EQ(RadixDigit(key, 0), 0xA1u);
  EXPECT_EQ(RadixDigit(key, 3), 0xD4u);
  EXPECT_EQ(RadixPrefixMask(0), 0u);
  EXPECT_EQ(RadixPrefixMask(1), 0xFF000000u);
  EXPECT_EQ(RadixPrefixMask(3), 0xFFFFFF00u);
  int32_t hist[256] = {};
  hist[200] = 3;
  hist[100] = 5;
  hist[7] = 1;
  int32_t above = -1;
  EXPECT_EQ(SelectDigit(hist, 1, &above), 200u);
  EXPECT_EQ(above, 0);
  EXPECT_EQ(SelectDigit(hist, 3, &above), 200u);
  EXPECT_EQ(SelectDigit(hist, 4, &above), 100u);
  EXPECT_EQ(above, 3);
  EXPECT_EQ(SelectDigit(hist, 9, &above), 7u);
  EXPECT_EQ(above, 8);
}

TEST(SamplingPlanTest, PlanPicksTheMode) {
  SamplingParams p;
  EXPECT_EQ(PlanSampling(p, 0, 100).mode, kSampleGreedy);
  p.temperature = 0.7f;
  EXPECT_EQ(PlanSampling(p, 0, 100).mode, kSampleTemperature);
  p.top_k = 100;  // >= vocab: off
  EXPECT_EQ(PlanSampling(p, 0, 100).mode, kSampleTemperature);
  EXPECT_EQ(PlanSampling(p, 0, 100).top_k, 0);
  p.top_k = 40;
  EXPECT_EQ(PlanSampling(p, 0, 100).mode, kSampleCandidates);
  p.top_k = -1;
  p.top_p = 0.9f;
  EXPECT_EQ(PlanSampling(p, 0, 100).mode, kSampleCandidates);
  p.top_k = kMaxDeviceCandidates + 1;
  EXPECT_EQ(PlanSampling(p, 0, 1 << 20).mode, kSampleHost);
  p.seed = 77;
  const DeviceSamplingParams d = PlanSampling(p, 9, 1 << 20);
  EXPECT_EQ(d.seed, 77u);
  EXPECT_EQ(d.step, 9u);
  EXPECT_EQ(sizeof(DeviceSamplingParams), 32u);
}

std::vector<float> Row(std::mt19937& rng, int64_t vocab, float scale, int kind) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> row(vocab);
  for (float& x : row) x = nd(rng);
  if (kind == 1) {  // ties at the top and elsewhere
    for (int64_t i = 0; i < vocab; i += 3) row[i] = std::round(row[i]);
  } else if (kind == 2) {  // flat
    for (float& x : row) x = 0.0f;
  }
  return row;
}

TEST(SamplingPlanTest, SimulationSamplesLikeTheCpuSampler) {
  std::mt19937 rng(3);
  int rows = 0, equal = 0, flagged = 0;
  for (int64_t vocab : {7, 100, 2000, 5000}) {
    for (int kind = 0; kind < 3; ++kind) {
      for (float scale : {0.3f, 3.0f}) {
        for (float temperature : {0.0f, 0.5f, 1.0f, 1.7f}) {
          for (int top_k : {0, 1, 5, 50, 1024, 3000}) {
            for (float top_p : {1.0f, 0.95f, 0.5f, 0.1f}) {
              const std::vector<float> row = Row(rng, vocab, scale, kind);
              SamplingParams p;
              p.temperature = temperature;
              p.top_k = top_k;
              p.top_p = top_p;
              p.seed = rng();
              const uint64_t step = rng() % 100;
              const SampledToken want = SampleToken(row.data(), vocab, p, step);
              const DeviceSamplingParams d = PlanSampling(p, step, vocab);
              const SimulatedSample got = SimulateDeviceSample(row.data(), vocab, d);
              ++rows;
              if (got.needs_host) {
                ++flagged;
                // Only rows the device cannot finish are flagged.
                const bool big_k = d.top_k > kMaxDeviceCandidates;
                const bool nucleus = d.top_k == 0 && p.top_p < 1.0f &&
                                     vocab > kMaxDeviceCandidates;
                EXPECT_TRUE(big_k || nucleus) << "vocab " << vocab << " k " << top_k;
                continue;
              }
              EXPECT_NEAR(got.logprob, want.logprob, 1e-5f);
              if (got.token == want.token) {
                ++equal;
              } else {
                // Only possible where the CPU sums the full vocabulary in
                // sorted order and the device in index order (top-p without
                // top-k): a boundary within rounding.
                EXPECT_EQ(d.top_k, 0) << "vocab " << vocab << " k " << top_k << " p " << top_p;
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(flagged, 0) << "the flat rows with top-p must need the host";
  EXPECT_GE(equal, (rows - flagged) * 999 / 1000) << rows << " rows, " << flagged << " flagged";
}

TEST(SamplingPlanTest, FlatRowWithNucleusBeyondTheCandidatesNeedsTheHost) {
  std::vector<float> flat(4096, 0.0f);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_p = 0.9f;
  const DeviceSamplingParams d = PlanSampling(p, 0, 4096);
  EXPECT_TRUE(SimulateDeviceSample(flat.data(), 4096, d).needs_host);
  // A peaked row's nucleus is inside the candidates.
  flat[17] = 50.0f;
  const SimulatedSample s = SimulateDeviceSample(flat.data(), 4096, d);
  EXPECT_FALSE(s.needs_host);
  EXPECT_EQ(s.token, 17);
}

}  // namespace
}  // namespace colo::kernels::cuda
