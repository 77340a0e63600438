#include "kernels/cuda/gemm.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/linear.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::ExpectAllNear;
using testing::RandomFloats;

TEST(CudaGemmTest, LinearMatchesCpuWithAndWithoutBias) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(CublasHandle cublas, CublasHandle::Create());
  kernels::ThreadPool pool(1);
  struct Shape {
    int64_t m, k, n;
  };
  for (const Shape s : {Shape{1, 768, 2304}, Shape{7, 129, 33}, Shape{64, 512, 1000}}) {
    SCOPED_TRACE(::testing::Message() << s.m << "x" << s.k << "x" << s.n);
    const std::vector<float> x = RandomFloats(s.m * s.k, 41);
    const std::vector<float> w = RandomFloats(s.n * s.k, 42);
    const std::vector<float> b = RandomFloats(s.n, 43);
    std::vector<float> want(s.m * s.n), want_bias(s.m * s.n);
    kernels::Linear(x.data(), s.m, s.k, w.data(), s.n, nullptr, want.data(), &pool);
    kernels::Linear(x.data(), s.m, s.k, w.data(), s.n, b.data(), want_bias.data(), &pool);
    ASSERT_OK_AND_ASSIGN(auto d_x, DeviceArray<float>::FromHost(x));
    ASSERT_OK_AND_ASSIGN(auto d_w, DeviceArray<float>::FromHost(w));
    ASSERT_OK_AND_ASSIGN(auto d_b, DeviceArray<float>::FromHost(b));
    ASSERT_OK_AND_ASSIGN(auto d_y, DeviceArray<float>::Create(s.m * s.n));
    ASSERT_OK_AND_ASSIGN(auto d_yb, DeviceArray<float>::Create(s.m * s.n));
    ASSERT_OK(cublas.Linear(d_x.data(), s.m, s.k, d_w.data(), s.n, nullptr,
                            d_y.data(), stream.get()));
    ASSERT_OK(cublas.Linear(d_x.data(), s.m, s.k, d_w.data(), s.n, d_b.data(),
                            d_yb.data(), stream.get()));
    ASSERT_OK(stream.Synchronize());
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_y.ToHost());
    ASSERT_OK_AND_ASSIGN(std::vector<float> got_bias, d_yb.ToHost());
    // Dot products of k terms in [-1, 1]: rounding grows like sqrt(k) ulps.
    ExpectAllNear(got, want, 1e-4f, 1e-4f);
    ExpectAllNear(got_bias, want_bias, 1e-4f, 1e-4f);
  }
}

TEST(CudaGemmTest, EmptyHandleAndBadShapes) {
  CublasHandle empty;
  EXPECT_THAT(empty.Linear(nullptr, 1, 1, nullptr, 1, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CublasHandle cublas, CublasHandle::Create());
  EXPECT_THAT(cublas.Linear(nullptr, 1, 0, nullptr, 1, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
