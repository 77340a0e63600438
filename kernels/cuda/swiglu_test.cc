#include "kernels/cuda/swiglu.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/swiglu.h"
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

TEST(CudaSwiGluTest, MatchesCpuInEveryDtype) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t tokens = 4, inter = 1375;
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  for (DType d : testing::kComputeDTypes) {
    SCOPED_TRACE(DTypeName(d));
    const std::vector<float> gate_up =
        RoundAll(d, RandomFloats(tokens * 2 * inter, 8, -8.0f, 8.0f));
    std::vector<float> want(tokens * inter);
    kernels::SwiGlu(gate_up.data(), tokens, inter, want.data());
    ASSERT_OK_AND_ASSIGN(auto d_in, Upload(gate_up, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_out, DeviceArray<uint8_t>::Create(want.size() * DTypeBytes(d)));
    ASSERT_OK(SwiGlu(d_in.data(), tokens, inter, d_out.data(), d, stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_out, d, stream.get()));
    ExpectAllNear(got, want, 1e-6f, 1e-5f + Eps(d));
  }
}

}  // namespace
}  // namespace colo::kernels::cuda
