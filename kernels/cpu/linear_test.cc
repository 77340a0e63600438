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

// Every row of every batch size and thread count equals that row computed
// alone, bit for bit, with n spanning several column blocks and tiles of
// every remainder (rows % tile rows, columns % tile columns).
TEST(LinearTest, RowsAreBitIdenticalAcrossBatchSizesAndThreadCounts) {
  const int64_t k = 200, n = 211, max_m = 41;
  auto x = Random(max_m * k, 6), w = Random(n * k, 7), b = Random(n, 8);
  std::vector<std::vector<float>> alone(max_m, std::vector<float>(n));
  for (int64_t r = 0; r < max_m; ++r) {
    Linear(x.data() + r * k, 1, k, w.data(), n, b.data(), alone[r].data(), nullptr);
  }
  ThreadPool two(2), three(3);
  for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &two, &three}) {
    for (int64_t m : {2, 3, 4, 5, 6, 7, 8, 9, 13, 32, 41}) {
      for (int64_t first : {int64_t{0}, max_m - m}) {
        std::vector<float> y(m * n);
        Linear(x.data() + first * k, m, k, w.data(), n, b.data(), y.data(), pool);
        for (int64_t r = 0; r < m; ++r)
          for (int64_t c = 0; c < n; ++c)
            ASSERT_EQ(y[r * n + c], alone[first + r][c])
                << "m " << m << " row " << first + r << " col " << c << " threads "
                << (pool ? pool->num_threads() : 1);
      }
    }
  }
}

}  // namespace
}  // namespace kernels
}  // namespace colo
