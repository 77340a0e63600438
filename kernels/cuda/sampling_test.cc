#include "kernels/cuda/sampling.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo::kernels::cuda {
namespace {

using testing::ExpectAllNear;
using testing::RandomFloats;

// Rows with ties (the lowest index must win), a constant row and random rows.
std::vector<float> TestLogits(int64_t rows, int64_t vocab) {
  std::vector<float> logits = RandomFloats(rows * vocab, 31, -10.0f, 10.0f);
  for (int64_t i : {int64_t{5}, int64_t{300}, vocab - 1}) {
    if (i < vocab) logits[0 * vocab + i] = 50.0f;
  }
  for (int64_t i = 0; i < vocab; ++i) logits[1 * vocab + i] = 0.25f;
  logits[2 * vocab + vocab - 1] = 99.0f;  // max at the very end
  return logits;
}

TEST(CudaSamplingTest, GreedyAndLogprobsMatchCpu) {
  COLO_SKIP_WITHOUT_GPU();
  for (int64_t vocab : {7, 256, 1000, 151936}) {
    SCOPED_TRACE(vocab);
    const int64_t rows = 6;
    const std::vector<float> logits = TestLogits(rows, vocab);
    ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
    ASSERT_OK_AND_ASSIGN(auto d_logits, DeviceArray<float>::FromHost(logits));
    ASSERT_OK_AND_ASSIGN(auto d_tokens, DeviceArray<int32_t>::Create(rows));
    ASSERT_OK_AND_ASSIGN(auto d_logprobs, DeviceArray<float>::Create(rows));
    ASSERT_OK_AND_ASSIGN(auto d_lsm, DeviceArray<float>::Create(rows * vocab));
    ASSERT_OK(GreedySample(d_logits.data(), rows, vocab, d_tokens.data(),
                           d_logprobs.data(), stream.get()));
    ASSERT_OK(LogSoftmax(d_logits.data(), rows, vocab, d_lsm.data(), stream.get()));
    ASSERT_OK(stream.Synchronize());
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> tokens, d_tokens.ToHost());
    ASSERT_OK_AND_ASSIGN(std::vector<float> logprobs, d_logprobs.ToHost());
    ASSERT_OK_AND_ASSIGN(std::vector<float> lsm, d_lsm.ToHost());
    std::vector<float> want_lsm(rows * vocab);
    for (int64_t r = 0; r < rows; ++r) {
      const SampledToken want =
          SampleToken(&logits[r * vocab], vocab, SamplingParams(), 0);
      EXPECT_EQ(tokens[r], want.token) << "row " << r;
      EXPECT_NEAR(logprobs[r], want.logprob, 1e-6f + 1e-6f * std::fabs(want.logprob))
          << "row " << r;
      kernels::LogSoftmax(&logits[r * vocab], vocab, &want_lsm[r * vocab]);
    }
    EXPECT_EQ(tokens[1], 0);  // constant row
    if (vocab > 5) {
      EXPECT_EQ(tokens[0], 5);  // the first of the tied maxima
    }
    ExpectAllNear(lsm, want_lsm, 1e-5f, 1e-6f);
  }
}

TEST(CudaSamplingTest, SampleTokensMatchesCpuForEveryMode) {
  COLO_SKIP_WITHOUT_GPU();
  const int64_t rows = 5, vocab = 5000;
  const std::vector<float> logits = RandomFloats(rows * vocab, 32, -3.0f, 3.0f);
  std::vector<SamplingParams> params(rows);
  params[1].temperature = 0.7f;
  params[1].seed = 42;
  params[2].temperature = 1.3f;
  params[2].top_k = 20;
  params[2].seed = 7;
  params[3].temperature = 1.0f;
  params[3].top_p = 0.9f;
  params[3].seed = 9;
  params[4].temperature = 0.5f;
  params[4].top_k = 100;
  params[4].top_p = 0.5f;
  params[4].seed = 11;
  const std::vector<uint64_t> steps = {0, 3, 1, 17, 2};
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto d_logits, DeviceArray<float>::FromHost(logits));
  std::vector<SampledToken> got(rows);
  ASSERT_OK(SampleTokens(d_logits.data(), rows, vocab, params, steps, got.data(),
                         stream.get()));
  for (int64_t r = 0; r < rows; ++r) {
    const SampledToken want = SampleToken(&logits[r * vocab], vocab, params[r], steps[r]);
    EXPECT_EQ(got[r].token, want.token) << "row " << r;
    EXPECT_EQ(got[r].logprob, want.logprob) << "row " << r;
  }
  // All-greedy batch: the device path.
  std::vector<SamplingParams> greedy(rows);
  ASSERT_OK(SampleTokens(d_logits.data(), rows, vocab, greedy, steps, got.data(),
                         stream.get()));
  for (int64_t r = 0; r < rows; ++r) {
    const SampledToken want = SampleToken(&logits[r * vocab], vocab, greedy[r], 0);
    EXPECT_EQ(got[r].token, want.token) << "row " << r;
    EXPECT_NEAR(got[r].logprob, want.logprob, 1e-5f) << "row " << r;
  }
}

TEST(CudaSamplingTest, RejectsMismatchedParams) {
  std::vector<SamplingParams> params(2);
  std::vector<uint64_t> steps(3);
  SampledToken out[3];
  EXPECT_THAT(SampleTokens(nullptr, 3, 10, params, steps, out, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GreedySample(nullptr, 1, 0, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
