// GPU tests skip where no GPU is usable (CI) and FAIL where one should be:
// the GPU suite (tests/gpu/run_gpu_suite.sh) sets COLO_REQUIRE_GPU=1, so a
// driver or loader problem on a GPU machine shows as a failure instead of a
// green run with no coverage.
//
//   COLO_SKIP_OR_FAIL_WITHOUT_GPU(status)  in a test body: returns from the
//   test (skipped, or failed under COLO_REQUIRE_GPU=1) when `status` (the
//   result of opening the device) is not OK.
#ifndef COLO_TESTS_UTIL_GPU_REQUIRED_H_
#define COLO_TESTS_UTIL_GPU_REQUIRED_H_

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace colo::test_util {

// True when COLO_REQUIRE_GPU is set to 1.
inline bool GpuRequired() {
  const char* v = std::getenv("COLO_REQUIRE_GPU");
  return v != nullptr && std::strcmp(v, "1") == 0;
}

}  // namespace colo::test_util

#define COLO_SKIP_OR_FAIL_WITHOUT_GPU(status_expr)                                     \
  do {                                                                                 \
    const ::absl::Status _colo_gpu_status = (status_expr);                             \
    if (!_colo_gpu_status.ok()) {                                                      \
      if (::colo::test_util::GpuRequired()) {                                          \
        GTEST_FAIL() << "COLO_REQUIRE_GPU=1 but the GPU is not usable: "               \
                     << _colo_gpu_status;                                              \
      }                                                                                \
      GTEST_SKIP() << "no usable CUDA device: " << _colo_gpu_status.message();         \
    }                                                                                  \
  } while (0)

#endif  // COLO_TESTS_UTIL_GPU_REQUIRED_H_
