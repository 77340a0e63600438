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

using testing::Download;
using testing::Eps;
using testing::ExpectAllNear;
using testing::RandomFloats;
using testing::RoundAll;
using testing::Upload;

TEST(CudaRmsNormTest, MatchesCpuIncludingInPlaceInEveryDtype) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  for (DType d : testing::kComputeDTypes) {
    for (int64_t dim : {7, 256, 1000, 4096}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(d) << " dim " << dim);
      const int64_t rows = 5;
      const std::vector<float> x = RoundAll(d, RandomFloats(rows * dim, 3, -3.0f, 3.0f));
      const std::vector<float> w = RoundAll(d, RandomFloats(dim, 4, 0.5f, 1.5f));
      std::vector<float> want(x.size());
      kernels::RmsNorm(x.data(), rows, dim, w.data(), 1e-6f, want.data());
      ASSERT_OK_AND_ASSIGN(auto d_x, Upload(x, d, stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_w, Upload(w, d, stream.get()));
      ASSERT_OK_AND_ASSIGN(auto d_y, DeviceArray<uint8_t>::Create(x.size() * DTypeBytes(d)));
      ASSERT_OK(RmsNorm(d_x.data(), rows, dim, d_w.data(), 1e-6f, d_y.data(), d, stream.get()));
      ASSERT_OK(RmsNorm(d_x.data(), rows, dim, d_w.data(), 1e-6f, d_x.data(), d, stream.get()));
      ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_y, d, stream.get()));
      ASSERT_OK_AND_ASSIGN(std::vector<float> got_in_place, Download(d_x, d, stream.get()));
      ExpectAllNear(got, want, 1e-6f, 1e-5f + Eps(d));
      EXPECT_EQ(got_in_place, got);
    }
  }
}

TEST(CudaRmsNormTest, HeadsMatchCpuPerHeadAndLeaveTheRestAlone) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  // A fused qkv row: q (4 heads x 64) then k and v; norm only the q part.
  const int64_t tokens = 3, heads = 4, head_dim = 64, stride = 3 * heads * head_dim;
  for (DType d : testing::kComputeDTypes) {
    SCOPED_TRACE(DTypeName(d));
    const std::vector<float> x = RoundAll(d, RandomFloats(tokens * stride, 5, -2.0f, 2.0f));
    const std::vector<float> w = RoundAll(d, RandomFloats(head_dim, 6, 0.5f, 1.5f));
    std::vector<float> want = x;
    for (int64_t t = 0; t < tokens; ++t) {
      kernels::RmsNorm(want.data() + t * stride, heads, head_dim, w.data(), 1e-5f,
                       want.data() + t * stride);
    }
    ASSERT_OK_AND_ASSIGN(auto d_x, Upload(x, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_w, Upload(w, d, stream.get()));
    ASSERT_OK(RmsNormHeads(d_x.data(), tokens, heads, head_dim, stride, d_w.data(), 1e-5f, d,
                           stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_x, d, stream.get()));
    ExpectAllNear(got, want, 1e-6f, 1e-5f + Eps(d));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = heads * head_dim; i < stride; ++i) {
        ASSERT_EQ(got[t * stride + i], x[t * stride + i]) << "k/v part touched";
      }
    }
  }
}

TEST(CudaRmsNormTest, RejectsBadShapes) {
  EXPECT_THAT(RmsNorm(nullptr, 1, 0, nullptr, 1e-6f, nullptr, DType::kFloat32, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RmsNormHeads(nullptr, 1, 4, 8, 16, nullptr, 1e-6f, DType::kBFloat16, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
