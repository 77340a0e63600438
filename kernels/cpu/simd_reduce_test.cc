#include "kernels/cpu/simd_reduce.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"

// AVX-512 intrinsics built on _mm512_undefined_* trip these (simd_reduce.h).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace colo {
namespace kernels {
namespace {

// Plain-C++ version of the documented tree.
float TreeSum(const float* a) {
  float b[8], c[4], d[2];
  for (int i = 0; i < 8; ++i) b[i] = a[i] + a[i + 8];
  for (int i = 0; i < 4; ++i) c[i] = b[i] + b[i + 4];
  for (int i = 0; i < 2; ++i) d[i] = c[i] + c[i + 2];
  return d[0] + d[1];
}

COLO_SIMD_AVX512 void CheckRandomVectors(uint32_t seed) {
  std::mt19937 rng(seed);
  // Wide dynamic range so that a different addition order shows.
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-20, 20);
  alignas(64) float lanes[16][16];
  __m512 v[16];
  for (int j = 0; j < 16; ++j) {
    for (int i = 0; i < 16; ++i) lanes[j][i] = std::ldexp(mant(rng), exp(rng));
    v[j] = _mm512_load_ps(lanes[j]);
  }
  alignas(64) float sums[16];
  _mm512_store_ps(sums, ReduceSixteen(v));
  for (int j = 0; j < 16; ++j) {
    const float tree = TreeSum(lanes[j]);
    ASSERT_EQ(ReduceOne(v[j]), tree) << "vector " << j << " seed " << seed;
    ASSERT_EQ(sums[j], tree) << "vector " << j << " seed " << seed;
  }
}

TEST(SimdReduceTest, BothHelpersFollowTheDocumentedTree) {
  if (!__builtin_cpu_supports("avx512f")) GTEST_SKIP() << "CPU has no AVX-512F";
  for (uint32_t seed = 1; seed <= 200; ++seed) CheckRandomVectors(seed);
}

}  // namespace
}  // namespace kernels
}  // namespace colo
