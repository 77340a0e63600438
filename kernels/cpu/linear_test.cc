#include "kernels/cpu/linear.h"

#include <cmath>
#include <random>
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

void Reference(const std::vector<float>& x, int64_t m, int64_t k,
               const std::vector<float>& w, int64_t n, const float* bias,
               std::vector<double>* y) {
  y->assign(m * n, 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < n; ++c) {
      double s = bias ? bias[c] : 0.0;
      for (int64_t i = 0; i < k; ++i) s += double(x[r * k + i]) * w[c * k + i];
      (*y)[r * n + c] = s;
    }
}

TEST(LinearTest, MatchesNaiveReferenceForOddShapes) {
  ThreadPool pool(3);
  for (auto [m, k, n] : std::vector<std::tuple<int, int, int>>{
           {1, 1, 1}, {1, 7, 5}, {3, 17, 9}, {5, 64, 33}, {9, 130, 70}}) {
    auto x = Random(m * k, 1), w = Random(n * k, 2), b = Random(n, 3);
    std::vector<float> y(m * n), yb(m * n);
    Linear(x.data(), m, k, w.data(), n, b.data(), y.data(), &pool);
    LinearBlas(x.data(), m, k, w.data(), n, b.data(), yb.data());
    std::vector<double> ref;
    Reference(x, m, k, w, n, b.data(), &ref);
    for (int64_t i = 0; i < m * n; ++i) {
      ASSERT_NEAR(y[i], ref[i], 1e-4 * (1 + k)) << m << "x" << k << "x" << n;
      ASSERT_NEAR(yb[i], ref[i], 1e-4 * (1 + k));
    }
  }
}

TEST(LinearTest, RowsAreBitIdenticalWhateverTheBatch) {
  ThreadPool pool(2);
  const int64_t k = 131, n = 67, m = 37;
  auto x = Random(m * k, 4), w = Random(n * k, 5);
  std::vector<float> all(m * n);
  Linear(x.data(), m, k, w.data(), n, nullptr, all.data(), &pool);
  for (int64_t r = 0; r < m; ++r) {
    std::vector<float> one(n);
    Linear(x.data() + r * k, 1, k, w.data(), n, nullptr, one.data(), nullptr);
    for (int64_t c = 0; c < n; ++c) {
      ASSERT_EQ(one[c], all[r * n + c]) << "row " << r << " col " << c;
      ASSERT_EQ(DotProduct(x.data() + r * k, w.data() + c * k, k), one[c]);
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace colo
