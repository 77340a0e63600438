#include "kernels/cuda/elementwise.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::Download;
using testing::RandomFloats;
using testing::RoundAll;
using testing::RoundTo;
using testing::Upload;

TEST(CudaElementwiseTest, AddInPlaceAddBiasGatherRowsInEveryDtype) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t rows = 37, cols = 1000;
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  for (DType d : testing::kComputeDTypes) {
    SCOPED_TRACE(DTypeName(d));
    const std::vector<float> a = RoundAll(d, RandomFloats(rows * cols, 9));
    const std::vector<float> b = RoundAll(d, RandomFloats(rows * cols, 10));
    const std::vector<float> bias = RoundAll(d, RandomFloats(cols, 11));
    const std::vector<int32_t> pick = {36, 0, 5, 5};
    // Each op computes in float and rounds once.
    std::vector<float> want(rows * cols);
    for (int64_t i = 0; i < rows * cols; ++i) {
      want[i] = RoundTo(d, RoundTo(d, a[i] + b[i]) + bias[i % cols]);
    }
    std::vector<float> want_rows;
    for (int32_t r : pick) {
      want_rows.insert(want_rows.end(), want.begin() + r * cols, want.begin() + (r + 1) * cols);
    }
    ASSERT_OK_AND_ASSIGN(auto d_a, Upload(a, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_b, Upload(b, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_bias, Upload(bias, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_pick, DeviceArray<int32_t>::FromHost(pick, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_rows, DeviceArray<uint8_t>::Create(pick.size() * cols * 4));
    ASSERT_OK(AddInPlace(d_a.data(), d_b.data(), rows * cols, d, stream.get()));
    ASSERT_OK(AddBias(d_a.data(), rows, cols, d_bias.data(), d, stream.get()));
    ASSERT_OK(GatherRows(d_a.data(), d_pick.data(), pick.size(), cols, d_rows.data(), d,
                         stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_a, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got_rows, Download(d_rows, d, stream.get()));
    got_rows.resize(want_rows.size());
    EXPECT_EQ(got, want);  // one float add, one rounding: bit-exact
    EXPECT_EQ(got_rows, want_rows);
  }
}

TEST(CudaElementwiseTest, ConvertElementsRoundsLikeTheHost) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  std::vector<float> src = RandomFloats(5000, 12, -600.0f, 600.0f);  // beyond fp8's 448
  src.insert(src.end(), {0.0f, -0.0f, 1e-8f, -1e-8f, 65504.0f, 3.0e38f, -3.0e38f});
  for (DType from : testing::kComputeDTypes) {
    const std::vector<float> in = RoundAll(from, src);
    ASSERT_OK_AND_ASSIGN(auto d_in, Upload(in, from, stream.get()));
    for (DType to : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFp8E4M3}) {
      SCOPED_TRACE(::testing::Message() << DTypeName(from) << " -> " << DTypeName(to));
      ASSERT_OK_AND_ASSIGN(auto d_out, DeviceArray<uint8_t>::Create(in.size() * DTypeBytes(to)));
      ASSERT_OK(ConvertElements(d_in.data(), from, d_out.data(), to, in.size(), stream.get()));
      ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_out, to, stream.get()));
      for (size_t i = 0; i < in.size(); ++i) {
        const float want = RoundTo(to, in[i]);
        if (std::isinf(want)) {
          EXPECT_EQ(got[i], want) << i;
        } else {
          ASSERT_EQ(got[i], want) << "element " << i << " = " << in[i];
        }
      }
      if (to == DType::kFp8E4M3) {
        for (float g : got) EXPECT_LE(std::fabs(g), 448.0f);  // saturates, never inf
      }
    }
  }
}

TEST(CudaElementwiseTest, RejectsBadShapesAndDtypes) {
  EXPECT_THAT(AddInPlace(nullptr, nullptr, -1, DType::kFloat32, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AddBias(nullptr, 1, 0, nullptr, DType::kBFloat16, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AddInPlace(nullptr, nullptr, 4, DType::kFp8E4M3, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
