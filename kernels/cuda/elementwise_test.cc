#include "kernels/cuda/elementwise.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::RandomFloats;

TEST(CudaElementwiseTest, AddInPlaceAddBiasGatherRows) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t rows = 37, cols = 1000;
  const std::vector<float> a = RandomFloats(rows * cols, 9);
  const std::vector<float> b = RandomFloats(rows * cols, 10);
  const std::vector<float> bias = RandomFloats(cols, 11);
  const std::vector<int32_t> pick = {36, 0, 5, 5};
  std::vector<float> want = a;
  for (int64_t i = 0; i < rows * cols; ++i) want[i] = (a[i] + b[i]) + bias[i % cols];
  std::vector<float> want_rows;
  for (int32_t r : pick) {
    want_rows.insert(want_rows.end(), want.begin() + r * cols,
                     want.begin() + (r + 1) * cols);
  }
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_a, DeviceArray<float>::FromHost(a));
  ASSERT_OK_AND_ASSIGN(auto d_b, DeviceArray<float>::FromHost(b));
  ASSERT_OK_AND_ASSIGN(auto d_bias, DeviceArray<float>::FromHost(bias));
  ASSERT_OK_AND_ASSIGN(auto d_pick, DeviceArray<int32_t>::FromHost(pick));
  ASSERT_OK_AND_ASSIGN(auto d_rows, DeviceArray<float>::Create(pick.size() * cols));
  ASSERT_OK(AddInPlace(d_a.data(), d_b.data(), rows * cols, stream.get()));
  ASSERT_OK(AddBias(d_a.data(), rows, cols, d_bias.data(), stream.get()));
  ASSERT_OK(GatherRows(d_a.data(), d_pick.data(), pick.size(), cols, d_rows.data(),
                       stream.get()));
  ASSERT_OK(stream.Synchronize());
  ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_a.ToHost());
  ASSERT_OK_AND_ASSIGN(std::vector<float> got_rows, d_rows.ToHost());
  EXPECT_EQ(got, want);  // single float adds: bit-exact
  EXPECT_EQ(got_rows, want_rows);
}

}  // namespace
}  // namespace colo::kernels::cuda
