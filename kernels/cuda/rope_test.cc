#include "kernels/cuda/rope.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/rope.h"
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

TEST(CudaRopeTest, CosSinAndRotationMatchCpuInEveryDtype) {
  COLO_SKIP_WITHOUT_GPU();
  const int head_dim = 128, half = head_dim / 2, heads = 6;
  kernels::RopeScaling scaling;
  scaling.type = kernels::RopeScaling::Type::kLlama3;
  scaling.factor = 8.0;
  const std::vector<double> inv = kernels::RopeInverseFrequencies(head_dim, 500000.0, scaling);
  const std::vector<int64_t> positions = {0, 1, 7, 100, 4095, 131071};
  const std::vector<int32_t> positions32(positions.begin(), positions.end());
  const int64_t tokens = positions.size();
  std::vector<float> cos_want(tokens * half), sin_want(tokens * half);
  kernels::RopeCosSin(inv, positions.data(), tokens, cos_want.data(), sin_want.data());

  std::vector<float> inv_f(inv.begin(), inv.end());
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_inv, DeviceArray<float>::FromHost(inv_f, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_pos, DeviceArray<int32_t>::FromHost(positions32, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_cos, DeviceArray<float>::Create(tokens * half));
  ASSERT_OK_AND_ASSIGN(auto d_sin, DeviceArray<float>::Create(tokens * half));
  ASSERT_OK(RopeCosSin(d_inv.data(), half, d_pos.data(), tokens, d_cos.data(), d_sin.data(),
                       stream.get()));
  ASSERT_OK_AND_ASSIGN(std::vector<float> cos_got, d_cos.ToHost(stream.get()));
  ASSERT_OK_AND_ASSIGN(std::vector<float> sin_got, d_sin.ToHost(stream.get()));
  // Same float angle, cos/sin in double: equal up to the device's double
  // cos/sin ulp, i.e. at most one float ulp.
  ExpectAllNear(cos_got, cos_want, 1e-7f, 2e-7f);
  ExpectAllNear(sin_got, sin_want, 1e-7f, 2e-7f);

  // x is a fused row: q (heads) then padding of one head, to exercise the stride.
  const int64_t stride = (heads + 1) * head_dim;
  for (DType d : testing::kComputeDTypes) {
    SCOPED_TRACE(DTypeName(d));
    const std::vector<float> x = RoundAll(d, RandomFloats(tokens * stride, 7));
    std::vector<float> want = x;
    for (int64_t t = 0; t < tokens; ++t) {
      kernels::ApplyRope(want.data() + t * stride, 1, heads, head_dim,
                         cos_want.data() + t * half, sin_want.data() + t * half);
    }
    ASSERT_OK_AND_ASSIGN(auto d_x, Upload(x, d, stream.get()));
    ASSERT_OK(ApplyRope(d_x.data(), d, tokens, heads, head_dim, stride, d_cos.data(),
                        d_sin.data(), stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_x, d, stream.get()));
    ExpectAllNear(got, want, 1e-6f + Eps(d), 1e-6f + Eps(d));
  }
}

TEST(CudaRopeTest, RejectsOddHeadDim) {
  EXPECT_THAT(ApplyRope(nullptr, DType::kFloat32, 1, 1, 7, 7, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
