// The device sampler against the CPU sampler (kernels::SampleToken) and the
// host simulation of the device algorithm (SimulateDeviceSample): greedy
// with ties, temperature, top-k, top-p with and without top-k, flat rows
// whose nucleus needs the host, large vocabularies, and batch invariance.
// Skips without a GPU (fails under COLO_REQUIRE_GPU=1).
#include "kernels/cuda/sampling.h"

#include <cmath>
#include <cstring>
#include <random>
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
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  for (int64_t vocab : {7, 256, 1000, 151936}) {
    SCOPED_TRACE(vocab);
    const int64_t rows = 6;
    const std::vector<float> logits = TestLogits(rows, vocab);
    ASSERT_OK_AND_ASSIGN(auto d_logits, DeviceArray<float>::FromHost(logits, stream.get()));
    ASSERT_OK_AND_ASSIGN(auto d_tokens, DeviceArray<int32_t>::Create(rows));
    ASSERT_OK_AND_ASSIGN(auto d_logprobs, DeviceArray<float>::Create(rows));
    ASSERT_OK_AND_ASSIGN(auto d_lsm, DeviceArray<float>::Create(rows * vocab));
    ASSERT_OK(GreedySample(d_logits.data(), rows, vocab, d_tokens.data(), d_logprobs.data(),
                           stream.get()));
    ASSERT_OK(LogSoftmax(d_logits.data(), rows, vocab, d_lsm.data(), stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<int32_t> tokens, d_tokens.ToHost(stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> logprobs, d_logprobs.ToHost(stream.get()));
    ASSERT_OK_AND_ASSIGN(std::vector<float> lsm, d_lsm.ToHost(stream.get()));
    std::vector<float> want_lsm(rows * vocab);
    for (int64_t r = 0; r < rows; ++r) {
      const SampledToken want = SampleToken(&logits[r * vocab], vocab, SamplingParams(), 0);
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

struct Case {
  std::vector<float> logits;
  SamplingParams params;
  uint64_t step = 0;
};

// Runs SampleRows over `cases` (one row each, the same vocab).
void RunRows(const std::vector<Case>& cases, int64_t vocab, cudaStream_t stream,
             std::vector<int32_t>* tokens, std::vector<float>* logprobs,
             std::vector<int32_t>* host) {
  const int64_t rows = static_cast<int64_t>(cases.size());
  std::vector<float> logits;
  std::vector<DeviceSamplingParams> params;
  for (const Case& c : cases) {
    logits.insert(logits.end(), c.logits.begin(), c.logits.end());
    params.push_back(PlanSampling(c.params, c.step, vocab));
  }
  std::vector<uint8_t> raw(params.size() * sizeof(DeviceSamplingParams));
  std::memcpy(raw.data(), params.data(), raw.size());
  ASSERT_OK_AND_ASSIGN(auto d_logits, DeviceArray<float>::FromHost(logits, stream));
  ASSERT_OK_AND_ASSIGN(auto d_params, DeviceArray<uint8_t>::FromHost(raw, stream));
  ASSERT_OK_AND_ASSIGN(auto d_tokens, DeviceArray<int32_t>::Create(rows));
  ASSERT_OK_AND_ASSIGN(auto d_logprobs, DeviceArray<float>::Create(rows));
  ASSERT_OK_AND_ASSIGN(auto d_host, DeviceArray<int32_t>::Create(rows));
  ASSERT_OK(SampleRows(d_logits.data(), rows, vocab,
                       reinterpret_cast<const DeviceSamplingParams*>(d_params.data()),
                       d_tokens.data(), d_logprobs.data(), d_host.data(), stream));
  ASSERT_OK_AND_ASSIGN(*tokens, d_tokens.ToHost(stream));
  ASSERT_OK_AND_ASSIGN(*logprobs, d_logprobs.ToHost(stream));
  ASSERT_OK_AND_ASSIGN(*host, d_host.ToHost(stream));
}

TEST(CudaSamplingTest, SampleRowsMatchesTheCpuSamplerInEveryMode) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  std::mt19937 rng(7);
  for (int64_t vocab : {7, 1000, 5000, 151936}) {
    SCOPED_TRACE(vocab);
    std::vector<Case> cases;
    for (float temperature : {0.0f, 0.6f, 1.0f, 1.5f}) {
      for (int top_k : {0, 1, 20, 1024, 2000}) {
        for (float top_p : {1.0f, 0.9f, 0.3f}) {
          for (float scale : {1.0f, 8.0f}) {
            Case c;
            c.logits = RandomFloats(vocab, rng(), -scale, scale);
            if (cases.size() % 7 == 3) {
              for (int64_t i = 0; i < vocab; i += 2) c.logits[i] = std::round(c.logits[i]);
            }
            c.params.temperature = temperature;
            c.params.top_k = top_k;
            c.params.top_p = top_p;
            c.params.seed = rng();
            c.step = rng() % 1000;
            cases.push_back(std::move(c));
          }
        }
      }
    }
    std::vector<int32_t> tokens, host;
    std::vector<float> logprobs;
    RunRows(cases, vocab, stream.get(), &tokens, &logprobs, &host);
    int equal = 0, checked = 0, flagged = 0;
    for (size_t r = 0; r < cases.size(); ++r) {
      const Case& c = cases[r];
      const DeviceSamplingParams d = PlanSampling(c.params, c.step, vocab);
      const SimulatedSample sim = SimulateDeviceSample(c.logits.data(), vocab, d);
      ASSERT_EQ(host[r] != 0, sim.needs_host) << "row " << r << " mode " << d.mode;
      if (sim.needs_host) {
        ++flagged;
        continue;
      }
      const SampledToken want = SampleToken(c.logits.data(), vocab, c.params, c.step);
      EXPECT_NEAR(logprobs[r], want.logprob, 1e-5f + 1e-6f * std::fabs(want.logprob));
      ++checked;
      if (tokens[r] == want.token) {
        ++equal;
      } else {
        // The device's sums run in another order than the CPU's: only a
        // draw within rounding of a boundary may differ, and the greedy
        // mode never does.
        EXPECT_NE(d.mode, kSampleGreedy) << "row " << r;
      }
    }
    EXPECT_GE(equal, checked * 98 / 100) << checked << " rows checked, " << flagged << " flagged";
  }
}

TEST(CudaSamplingTest, FlatRowsWithANucleusBeyondTheCandidatesNeedTheHost) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  const int64_t vocab = 50000;
  std::vector<Case> cases(3);
  for (Case& c : cases) {
    c.logits.assign(vocab, 0.0f);
    c.params.temperature = 1.0f;
  }
  cases[0].params.top_p = 0.9f;   // flat: needs ~45000 candidates
  cases[1].params.top_p = 0.9f;   // peaked: nucleus of one
  cases[1].logits[12345] = 40.0f;
  cases[2].params.top_k = 5000;   // beyond kMaxDeviceCandidates
  std::vector<int32_t> tokens, host;
  std::vector<float> logprobs;
  RunRows(cases, vocab, stream.get(), &tokens, &logprobs, &host);
  EXPECT_EQ(host, (std::vector<int32_t>{1, 0, 1}));
  EXPECT_EQ(tokens[1], 12345);
}

// A row samples the same token alone and in a batch (the counter-based RNG
// and per-row blocks).
TEST(CudaSamplingTest, RowsAreBatchInvariant) {
  COLO_SKIP_WITHOUT_GPU();
  ASSERT_OK_AND_ASSIGN(CudaStream stream, CudaStream::Create());
  const int64_t vocab = 32000;
  std::vector<Case> batch;
  for (int i = 0; i < 8; ++i) {
    Case c;
    c.logits = RandomFloats(vocab, 100 + i, -5.0f, 5.0f);
    c.params.temperature = 0.8f;
    c.params.top_k = i % 2 == 0 ? 0 : 50;
    c.params.top_p = i % 3 == 0 ? 0.95f : 1.0f;
    c.params.seed = 1000 + i;
    c.step = 3;
    batch.push_back(c);
  }
  std::vector<int32_t> tokens, host;
  std::vector<float> logprobs;
  RunRows(batch, vocab, stream.get(), &tokens, &logprobs, &host);
  for (size_t i = 0; i < batch.size(); ++i) {
    std::vector<int32_t> t1, h1;
    std::vector<float> l1;
    RunRows({batch[i]}, vocab, stream.get(), &t1, &l1, &h1);
    EXPECT_EQ(t1[0], tokens[i]) << i;
    EXPECT_EQ(l1[0], logprobs[i]) << i;
    EXPECT_EQ(h1[0], host[i]) << i;
  }
}

TEST(CudaSamplingTest, RejectsBadShapes) {
  EXPECT_THAT(GreedySample(nullptr, 1, 0, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SampleRows(nullptr, -1, 10, nullptr, nullptr, nullptr, nullptr, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::kernels::cuda
