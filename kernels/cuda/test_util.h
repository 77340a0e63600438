// Helpers for the GPU kernel tests: skip without a device, random inputs,
// element-wise comparison with a tolerance.
#ifndef COLO_KERNELS_CUDA_TEST_UTIL_H_
#define COLO_KERNELS_CUDA_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"

// Skips the current test, with the runtime's reason, when there is no GPU.
#define COLO_SKIP_WITHOUT_GPU()                                           \
  do {                                                                    \
    const absl::Status _colo_gpu = ::colo::kernels::cuda::CudaDeviceAvailable(); \
    if (!_colo_gpu.ok()) {                                                \
      GTEST_SKIP() << "no usable CUDA device: " << _colo_gpu.message();   \
    }                                                                     \
  } while (0)

namespace colo::kernels::cuda::testing {

inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// |got - want| <= atol + rtol * |want| for every element; reports the first
// few mismatches and their count.
inline void ExpectAllNear(const std::vector<float>& got,
                          const std::vector<float>& want, float atol,
                          float rtol = 0.0f) {
  ASSERT_EQ(got.size(), want.size());
  int64_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const float tol = atol + rtol * std::fabs(want[i]);
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      if (++bad <= 5) {
        ADD_FAILURE() << "element " << i << ": got " << got[i] << " want "
                      << want[i] << " (tol " << tol << ")";
      }
    }
  }
  EXPECT_EQ(bad, 0) << "elements outside tolerance out of " << got.size();
}

}  // namespace colo::kernels::cuda::testing

#endif  // COLO_KERNELS_CUDA_TEST_UTIL_H_
