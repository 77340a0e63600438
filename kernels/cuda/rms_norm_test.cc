#include "kernels/cuda/rms_norm.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::ExpectAllNear;
using testing::RandomFloats;

TEST(CudaRmsNormTest, MatchesCpuIncludingInPlace) {
  COLO_SKIP_WITHOUT_GPU();
  for (int64_t dim : {7, 256, 1000, 4096}) {
    SCOPED_TRACE(dim);
    const int64_t rows = 5;
    const std::vector<float> x = RandomFloats(rows * dim, 3, -3.0f, 3.0f);
    const std::vector<float> w = RandomFloats(dim, 4, 0.5f, 1.5f);
    std::vector<float> want(x.size());
    kernels::RmsNorm(x.data(), rows, dim, w.data(), 1e-6f, want.data());
    ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
    ASSERT_OK_AND_ASSIGN(auto d_x, DeviceArray<float>::FromHost(x));
    ASSERT_OK_AND_ASSIGN(auto d_w, DeviceArray<float>::FromHost(w));
    ASSERT_OK_AND_ASSIGN(auto d_y, DeviceArray<float>::Create(x.size()));
    ASSERT_OK(RmsNorm(d_x.data(), rows, dim, d_w.data(), 1e-6f, d_y.data(),
                      stream.get()));
    // In place.
    ASSERT_OK(RmsNorm(d_x.data(), rows, dim, d_w.data(), 1e-6f, d_x.data(),
                      stream.get()));
    ASSERT_OK(stream.Synchronize());
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_y.ToHost());
    ASSERT_OK_AND_ASSIGN(std::vector<float> got_in_place, d_x.ToHost());
    ExpectAllNear(got, want, 1e-6f, 1e-5f);
    ExpectAllNear(got_in_place, want, 1e-6f, 1e-5f);
  }
}

TEST(CudaRmsNormTest, HeadsMatchCpuPerHeadAndLeaveTheRestAlone) {
  COLO_SKIP_WITHOUT_GPU();
  // A fused qkv row: q (4 heads x 64) then k and v; norm only the q part.
  const int64_t tokens = 3, heads = 4, head_dim = 64, stride = 3 * heads * head_dim;
  const std::vector<float> x = RandomFloats(tokens * stride, 5, -2.0f, 2.0f);
  const std::vector<float> w = RandomFloats(head_dim, 6, 0.5f, 1.5f);
  std::vector<float> want = x;
  for (int64_t t = 0; t < tokens; ++t) {
    kernels::RmsNorm(want.data() + t * stride, heads, head_dim, w.data(), 1e-5f,
                     want.data() + t * stride);
  }
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_x, DeviceArray<float>::FromHost(x));
  ASSERT_OK_AND_ASSIGN(auto d_w, DeviceArray<float>::FromHost(w));
  ASSERT_OK(RmsNormHeads(d_x.data(), tokens, heads, head_dim, stride, d_w.data(),
                         1e-5f, stream.get()));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_x.ToHost());
  ExpectAllNear(got, want, 1e-6f, 1e-5f);
}

TEST(CudaRmsNormTest, RejectsBadShapes) {
  EXPECT_THAT(RmsNorm(nullptr, 1, 0, nullptr, 1e-6f, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RmsNormHeads(nullptr, 1, 4, 8, 16, nullptr, 1e-6f, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
