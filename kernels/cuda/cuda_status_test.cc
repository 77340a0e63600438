#include "kernels/cuda/cuda_status.h"

#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

TEST(CudaStatusTest, SuccessIsOk) { EXPECT_OK(CudaStatus(cudaSuccess, "x")); }

TEST(CudaStatusTest, NamesTheCallAndTheError) {
  const absl::Status s = CudaStatus(cudaErrorLaunchFailure, "MyKernel");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInternal));
  EXPECT_NE(s.message().find("MyKernel"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("cudaErrorLaunchFailure"), absl::string_view::npos) << s;
}

TEST(CudaStatusTest, MapsCodes) {
  EXPECT_THAT(CudaStatus(cudaErrorMemoryAllocation, "m"),
              StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(CudaStatus(cudaErrorNoDevice, "d"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(CudaStatus(cudaErrorInsufficientDriver, "d"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(CudaStatus(cudaErrorInvalidValue, "v"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CudaStatusTest, DeviceProbeAgreesWithTheRuntime) {
  int count = 0;
  const bool runtime_has_device = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  cudaGetLastError();
  const absl::Status s = CudaDeviceAvailable(0);
  EXPECT_EQ(s.ok(), runtime_has_device) << s;
  if (!s.ok()) {
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kUnavailable));
  }
  EXPECT_THAT(CudaDeviceAvailable(-1), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace colo::kernels::cuda
