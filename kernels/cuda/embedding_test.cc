#include "kernels/cuda/embedding.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::Download;
using testing::RandomFloats;
using testing::RoundAll;
using testing::Upload;

TEST(CudaEmbeddingTest, MatchesCpuInEveryDtype) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t vocab = 1000, dim = 300;
  const std::vector<int32_t> tokens = {0, 999, 17, 17, 500, 3};
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_tokens, DeviceArray<int32_t>::FromHost(tokens, stream.get()));
  for (DType d : testing::kComputeDTypes) {
    SCOPED_TRACE(DTypeName(d));
    const std::vector<float> table = RoundAll(d, RandomFloats(vocab * dim, 1));
    std::vector<float> want(tokens.size() * dim);
    ASSERT_TRUE(kernels::EmbeddingLookup(table.data(), vocab, dim, tokens.data(), tokens.size(),
                                         want.data()));
    ASSERT_OK_AND_ASSIGN(auto d_table, Upload(table, d, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_out, DeviceArray<uint8_t>::Create(want.size() * DTypeBytes(d)));
    ASSERT_OK(EmbeddingLookup(d_table.data(), d, vocab, dim, d_tokens.data(), tokens.size(),
                              d_out.data(), stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> got, Download(d_out, d, stream.get()));
    EXPECT_EQ(got, want);  // a copy: bit-exact
  }
}

TEST(CudaEmbeddingTest, OutOfRangeTokenGivesZeroRow) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t vocab = 8, dim = 4;
  const std::vector<float> table = RandomFloats(vocab * dim, 2, 1.0f, 2.0f);
  const std::vector<int32_t> tokens = {-1, 8, 2};
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_table, DeviceArray<float>::FromHost(table, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_tokens, DeviceArray<int32_t>::FromHost(tokens, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto d_out, DeviceArray<float>::Create(tokens.size() * dim));
  ASSERT_OK(EmbeddingLookup(d_table.data(), DType::kFloat32, vocab, dim, d_tokens.data(),
                            tokens.size(), d_out.data(), stream.get()));
  ASSERT_OK_AND_ASSIGN(std::vector<float> got, d_out.ToHost(stream.get()));
  for (int i = 0; i < 2 * dim; ++i) EXPECT_EQ(got[i], 0.0f) << i;
  for (int i = 0; i < dim; ++i) EXPECT_EQ(got[2 * dim + i], table[2 * dim + i]);
}

TEST(CudaEmbeddingTest, RejectsBadShapes) {
  EXPECT_THAT(EmbeddingLookup(nullptr, DType::kFloat32, 0, 4, nullptr, 1, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(EmbeddingLookup(nullptr, DType::kFp8E4M3, 8, 4, nullptr, 1, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
