#include "kernels/cuda/vector_add.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "tests/util/gpu_required.h"

namespace colo::kernels::cuda {
namespace {

TEST(VectorAddTest, AddsOnTheDevice) {
  std::string why;
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(UsableDeviceCount(&why) == 0 ? absl::UnavailableError(why)
                                                               : absl::OkStatus());
  const int64_t n = 1 << 20;
  std::vector<float> a(n), b(n), out(n, -1.0f);
  for (int64_t i = 0; i < n; ++i) {
    a[i] = static_cast<float>(i);
    b[i] = 0.5f * static_cast<float>(i);
  }
  ASSERT_EQ(VectorAdd(a.data(), b.data(), out.data(), n), "");
  for (int64_t i = 0; i < n; i += 4097) EXPECT_EQ(out[i], 1.5f * i) << i;
}

}  // namespace
}  // namespace colo::kernels::cuda
