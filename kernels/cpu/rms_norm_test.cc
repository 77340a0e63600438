#include "kernels/cpu/rms_norm.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace colo {
namespace kernels {
namespace {

TEST(RmsNormTest, MatchesNaiveReference) {
  const int64_t rows = 3, dim = 10;
  std::vector<float> x(rows * dim), w(dim), y(rows * dim);
  for (int64_t i = 0; i < rows * dim; ++i) x[i] = std::sin(0.3 * i) * (1 + i % 4);
  for (int64_t i = 0; i < dim; ++i) w[i] = 0.5f + 0.1f * i;
  RmsNorm(x.data(), rows, dim, w.data(), 1e-5f, y.data());
  for (int64_t r = 0; r < rows; ++r) {
    double ms = 0;
    for (int64_t i = 0; i < dim; ++i) ms += x[r * dim + i] * x[r * dim + i];
    ms /= dim;
    for (int64_t i = 0; i < dim; ++i) {
      EXPECT_NEAR(y[r * dim + i], w[i] * x[r * dim + i] / std::sqrt(ms + 1e-5), 1e-5);
    }
  }
  // In place gives the same answer.
  std::vector<float> z = x;
  RmsNorm(z.data(), rows, dim, w.data(), 1e-5f, z.data());
  EXPECT_EQ(z, y);
}

}  // namespace
}  // namespace kernels
}  // namespace colo
