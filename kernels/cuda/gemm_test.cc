#include "kernels/cuda/gemm.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/linear.h"
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

struct Shape {
  int64_t m, k, n;
};

// |got - want| within the accumulated rounding of a k-term dot product
// (fp32 accumulation: ~sqrt(k) float ulps of the magnitude) plus one
// rounding of the output to `out`.
void ExpectGemmNear(const std::vector<float>& got, const std::vector<float>& want,
                    const std::vector<float>& magnitude, int64_t k, DType out) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const float tol = 1e-6f * std::sqrt(static_cast<float>(k)) * (magnitude[i] + 1.0f) +
                      testing::Eps(out) * std::fabs(want[i]) + 1e-6f;
    if (!(std::fabs(got[i] - want[i]) <= tol)) {
      if (++bad <= 5) ADD_FAILURE() << i << ": got " << got[i] << " want " << want[i];
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(CudaGemmTest, LinearMatchesCpuInEveryDtypeWithAndWithoutBias) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(Gemm gemm, Gemm::Create());
  ASSERT_OK_AND_ASSIGN(auto workspace, DeviceArray<uint8_t>::Create(size_t{32} << 20));
  ASSERT_OK(gemm.SetWorkspace(workspace.data(), workspace.size()));
  kernels::ThreadPool pool(1);
  for (DType d : testing::kComputeDTypes) {
    for (DType out : {d, DType::kFloat32}) {
      for (const Shape s : {Shape{1, 768, 2304}, Shape{7, 129, 33}, Shape{64, 512, 1000},
                            Shape{3, 64, 128256}}) {
        SCOPED_TRACE(::testing::Message() << DTypeName(d) << "->" << DTypeName(out) << " "
                                          << s.m << "x" << s.k << "x" << s.n);
        const std::vector<float> x = RoundAll(d, RandomFloats(s.m * s.k, 41));
        const std::vector<float> w = RoundAll(d, RandomFloats(s.n * s.k, 42));
        const std::vector<float> b = RoundAll(out, RandomFloats(s.n, 43));
        std::vector<float> want(s.m * s.n), want_bias(s.m * s.n), magnitude(s.m * s.n);
        kernels::Linear(x.data(), s.m, s.k, w.data(), s.n, nullptr, want.data(), &pool);
        for (int64_t i = 0; i < s.m * s.n; ++i) want_bias[i] = want[i] + b[i % s.n];
        // sum |x||w| bounds the rounding of the dot product.
        std::vector<float> ax(x.size()), aw(w.size());
        for (size_t i = 0; i < x.size(); ++i) ax[i] = std::fabs(x[i]);
        for (size_t i = 0; i < w.size(); ++i) aw[i] = std::fabs(w[i]);
        kernels::Linear(ax.data(), s.m, s.k, aw.data(), s.n, nullptr, magnitude.data(), &pool);
        ASSERT_OK_AND_ASSIGN(auto d_x, Upload(x, d, stream.get()));
        ASSERT_OK_AND_ASSIGN(auto d_w, Upload(w, d, stream.get()));
        ASSERT_OK_AND_ASSIGN(auto d_b, Upload(b, out, stream.get()));
        ASSERT_OK_AND_ASSIGN(auto d_y, DeviceArray<uint8_t>::Create(s.m * s.n * DTypeBytes(out)));
        ASSERT_OK_AND_ASSIGN(auto d_yb,
                             DeviceArray<uint8_t>::Create(s.m * s.n * DTypeBytes(out)));
        ASSERT_OK(gemm.Linear(d_x.data(), s.m, s.k, d_w.data(), s.n, nullptr, d_y.data(), d, out,
                              stream.get()));
        ASSERT_OK(gemm.Linear(d_x.data(), s.m, s.k, d_w.data(), s.n, d_b.data(), d_yb.data(), d,
                              out, stream.get()));
        ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_y, out, stream.get()));
        ASSERT_OK_AND_ASSIGN(std::vector<float> got_bias, Download(d_yb, out, stream.get()));
        ExpectGemmNear(got, want, magnitude, s.k, out);
        ExpectGemmNear(got_bias, want_bias, magnitude, s.k, out);
      }
    }
  }
}

// Sub-buffers at odd offsets (a fused qkv row's k part, a weight tensor 32
// bytes into a packed buffer) get plans for their alignment.
TEST(CudaGemmTest, UnalignedPointersAndPlanCache) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(Gemm gemm, Gemm::Create());
  kernels::ThreadPool pool(1);
  const DType d = DType::kBFloat16;
  const int64_t m = 5, k = 96, n = 40;
  const std::vector<float> x = RoundAll(d, RandomFloats(m * k + 8, 51));
  const std::vector<float> w = RoundAll(d, RandomFloats(n * k + 16, 52));
  ASSERT_OK_AND_ASSIGN(auto d_x, Upload(x, d, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_w, Upload(w, d, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_y, DeviceArray<uint8_t>::Create((m * n + 8) * 2));
  for (int64_t x_off : {0, 8}) {
    for (int64_t w_off : {0, 16}) {
      SCOPED_TRACE(::testing::Message() << "x+" << x_off << " w+" << w_off);
      std::vector<float> want(m * n);
      kernels::Linear(x.data() + x_off, m, k, w.data() + w_off, n, nullptr, want.data(), &pool);
      ASSERT_OK(gemm.Linear(d_x.data() + x_off * 2, m, k, d_w.data() + w_off * 2, n, nullptr,
                            d_y.data() + 8 * 2, d, d, stream.get()));
      ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_y, d, stream.get()));
      std::vector<float> got_y(got.begin() + 8, got.begin() + 8 + m * n);
      for (int64_t i = 0; i < m * n; ++i) {
        EXPECT_NEAR(got_y[i], want[i], 1e-5f * std::sqrt(float(k)) * 4 +
                                           testing::Eps(d) * std::fabs(want[i]))
            << i;
      }
    }
  }
  const size_t plans = gemm.num_plans();
  EXPECT_GE(plans, 1u);
  ASSERT_OK(gemm.Linear(d_x.data(), m, k, d_w.data(), n, nullptr, d_y.data() + 16, d, d,
                        stream.get()));
  EXPECT_EQ(gemm.num_plans(), plans) << "the same shape and alignments reuse their plan";
}

TEST(CudaGemmTest, EmptyGemmAndBadShapes) {
  Gemm empty;
  EXPECT_THAT(empty.Linear(nullptr, 1, 1, nullptr, 1, nullptr, nullptr, DType::kFloat32,
                           DType::kFloat32, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(Gemm gemm, Gemm::Create());
  EXPECT_THAT(gemm.Linear(nullptr, 1, 0, nullptr, 1, nullptr, nullptr, DType::kFloat32,
                          DType::kFloat32, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(gemm.Linear(nullptr, 1, 4, nullptr, 4, nullptr, nullptr, DType::kBFloat16,
                          DType::kFloat16, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(gemm.Linear(nullptr, 1, 4, nullptr, 4, nullptr, nullptr, DType::kFp8E4M3,
                          DType::kFp8E4M3, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
