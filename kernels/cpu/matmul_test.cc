#include "kernels/cpu/matmul.h"

#include <cmath>
#include <cstdlib>
#include <random>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// The contract, element by element: one fma chain over k, then the bias.
float Chain(const std::vector<float>& x, int64_t r, int64_t k, const std::vector<float>& w,
            int64_t n, int64_t c, const float* bias) {
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i) acc = std::fma(x[r * k + i], w[i * n + c], acc);
  return bias != nullptr ? acc + bias[c] : acc;
}

TEST(MatMulTest, EveryElementIsTheFmaChainBitForBit) {
  ThreadPool pool(3);
  for (auto [m, k, n] : std::vector<std::tuple<int, int, int>>{
           {1, 1, 1}, {1, 7, 5}, {3, 17, 9}, {5, 64, 33}, {9, 130, 200}, {6, 40, 97}}) {
    auto x = Random(m * k, 1), w = Random(k * n, 2), b = Random(n, 3);
    for (const float* bias : std::vector<const float*>{nullptr, b.data()}) {
      std::vector<float> y(m * n);
      MatMul(x.data(), m, k, w.data(), n, bias, y.data(), &pool);
      for (int64_t r = 0; r < m; ++r)
        for (int64_t c = 0; c < n; ++c)
          ASSERT_EQ(y[r * n + c], Chain(x, r, k, w, n, c, bias))
              << m << "x" << k << "x" << n << " at " << r << "," << c;
    }
  }
}

TEST(MatMulTest, MatchesDoubleReference) {
  const int64_t m = 7, k = 300, n = 130;
  auto x = Random(m * k, 4), w = Random(k * n, 5), b = Random(n, 6);
  std::vector<float> y(m * n);
  MatMul(x.data(), m, k, w.data(), n, b.data(), y.data(), nullptr);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double s = b[c];
      for (int64_t i = 0; i < k; ++i) s += double(x[r * k + i]) * w[i * n + c];
      ASSERT_NEAR(y[r * n + c], s, 1e-4 * k);
    }
}

TEST(MatMulTest, RowsAreBitIdenticalWhateverTheBatchAndThreads) {
  const int64_t k = 131, n = 203, m = 41;
  auto x = Random(m * k, 7), w = Random(k * n, 8);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<float> all(m * n);
    MatMul(x.data(), m, k, w.data(), n, nullptr, all.data(), &pool);
    for (int64_t r = 0; r < m; ++r) {
      std::vector<float> one(n);
      MatMul(x.data() + r * k, 1, k, w.data(), n, nullptr, one.data(), nullptr);
      for (int64_t c = 0; c < n; ++c) ASSERT_EQ(one[c], all[r * n + c]) << r << "," << c;
    }
  }
}

TEST(MatMulTest, EmptyShapesWriteNothing) {
  std::vector<float> y = {42.0f};
  MatMul(nullptr, 0, 3, nullptr, 1, nullptr, y.data(), nullptr);
  MatMul(nullptr, 1, 3, nullptr, 0, nullptr, y.data(), nullptr);
  EXPECT_EQ(y[0], 42.0f);
}

}  // namespace
}  // namespace kernels
}  // namespace colo
