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

using testing::ExpectAllNear;
using testing::RandomFloats;

TEST(CudaSwiGluTest, MatchesCpu) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t tokens = 4, inter = 1375;
  const std::vector<float> gate_up = RandomFloats(tokens * 2 * inter, 8, -8.0f, 8.0f);
  std::vector<float> want(tokens * inter);
  kernels::SwiGlu(gate_up.data(), tokens, inter, want.data());
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_in, DeviceArray<float>::FromHost(gate_up));
  ASSERT_OK_AND_ASSIGN(auto d_out, DeviceArray<float>::Create(want.size()));
  ASSERT_OK(SwiGlu(d_in.data(), tokens, inter, d_out.data(), stream.get()));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_out.ToHost());
  ExpectAllNear(got, want, 1e-6f, 1e-5f);
}

}  // namespace
}  // namespace colo::kernels::cuda
