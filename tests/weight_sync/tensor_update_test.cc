// UpdateWeightsFromTensor (a C++ client streaming checkpoint B in odd-sized
// chunks) and UpdateWeightsFromDisk against a real colo-engine: the updated
// engine generates what an engine started on B generates; a stream with
// missing bytes or a bad checkpoint is rejected naming the tensor, and the
// old weights keep serving.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

constexpr size_t kOddChunk = 997;  // not a multiple of 4: chunks split elements

class TensorUpdateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto ckpt = MakeCheckpoints();
    ASSERT_TRUE(ckpt.ok()) << ckpt.status();
    ckpt_ = new Checkpoints(*ckpt);
    auto ref = StartEngine(ckpt_->b, kVersionB);
    ASSERT_TRUE(ref.ok()) << ref.status();
    auto out = GreedyOutputs(**ref);
    ASSERT_TRUE(out.ok()) << out.status();
    auto sums = WeightChecksums(**ref);
    ASSERT_TRUE(sums.ok()) << sums.status();
    outputs_b_ = new Outputs(*out);
    checksums_b_ = new Checksums(*sums);
  }
  static void TearDownTestSuite() {
    delete ckpt_;
    delete outputs_b_;
    delete checksums_b_;
  }
  void SetUp() override {
    ASSERT_NE(ckpt_, nullptr);
    ASSERT_OK_AND_ASSIGN(engine_, StartEngine(ckpt_->a, kVersionA));
    ASSERT_OK_AND_ASSIGN(outputs_a_, GreedyOutputs(*engine_));
    ASSERT_OK_AND_ASSIGN(checksums_a_, WeightChecksums(*engine_));
    ASSERT_NE(outputs_a_.tokens, outputs_b_->tokens);
    ASSERT_OK_AND_ASSIGN(ckpt_b_, engine::SafetensorsCheckpoint::Open(ckpt_->b));
  }

  void ExpectServing(const Outputs& outputs, const Checksums& sums, const std::string& version) {
    ASSERT_OK_AND_ASSIGN(Outputs out, GreedyOutputs(*engine_));
    EXPECT_EQ(out.tokens, outputs.tokens);
    EXPECT_THAT(out.versions, ::testing::Each(version));
    ASSERT_OK_AND_ASSIGN(auto info, engine_->Info());
    EXPECT_EQ(info.weight_version(), version);
    ASSERT_OK_AND_ASSIGN(Checksums now, WeightChecksums(*engine_));
    EXPECT_EQ(now.crc, sums.crc);
  }

  static Checkpoints* ckpt_;
  static Outputs* outputs_b_;
  static Checksums* checksums_b_;
  std::unique_ptr<TestEngine> engine_;
  Outputs outputs_a_;
  Checksums checksums_a_;
  std::unique_ptr<engine::SafetensorsCheckpoint> ckpt_b_;
};
Checkpoints* TensorUpdateTest::ckpt_ = nullptr;
Outputs* TensorUpdateTest::outputs_b_ = nullptr;
Checksums* TensorUpdateTest::checksums_b_ = nullptr;

TEST_F(TensorUpdateTest, StreamOfOddChunksGivesCheckpointB) {
  std::vector<v1::WeightChunk> chunks = CheckpointChunks(*ckpt_b_, kOddChunk, kVersionB);
  ASSERT_GT(chunks.size(), ckpt_b_->tensors().size() + 1);  // tensors really were split
  ASSERT_OK_AND_ASSIGN(v1::UpdateWeightsResponse r, UpdateFromTensor(*engine_, chunks));
  EXPECT_EQ(r.weight_version(), kVersionB);
  EXPECT_EQ(r.num_tensors(), static_cast<int64_t>(ckpt_b_->tensors().size()));
  ExpectServing(*outputs_b_, *checksums_b_, kVersionB);
}

TEST_F(TensorUpdateTest, MissingBytesAreRejectedNamingTheTensor) {
  std::vector<v1::WeightChunk> chunks = CheckpointChunks(*ckpt_b_, kOddChunk, kVersionB);
  // Drop one chunk from the middle of a tensor that has several.
  size_t drop = 0;
  for (size_t i = 1; i + 1 < chunks.size(); ++i) {
    if (chunks[i].has_tensor() && chunks[i].tensor().offset_bytes() > 0 &&
        chunks[i + 1].has_tensor() &&
        chunks[i + 1].tensor().name() == chunks[i].tensor().name()) {
      drop = i;
      break;
    }
  }
  ASSERT_GT(drop, 0u);
  const std::string victim = chunks[drop].tensor().name();
  chunks.erase(chunks.begin() + static_cast<std::ptrdiff_t>(drop));
  EXPECT_THAT(UpdateFromTensor(*engine_, chunks).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(victim)));
  ExpectServing(outputs_a_, checksums_a_, kVersionA);
}

TEST_F(TensorUpdateTest, StreamWithoutCommitAppliesNothing) {
  std::vector<v1::WeightChunk> chunks = CheckpointChunks(*ckpt_b_, kOddChunk, kVersionB);
  chunks.pop_back();  // the commit
  EXPECT_THAT(UpdateFromTensor(*engine_, chunks).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("commit")));
  ExpectServing(outputs_a_, checksums_a_, kVersionA);
}

TEST_F(TensorUpdateTest, FromDiskGivesCheckpointB) {
  ASSERT_OK_AND_ASSIGN(v1::UpdateWeightsResponse r, UpdateFromDisk(*engine_, ckpt_->b, kVersionB));
  EXPECT_EQ(r.weight_version(), kVersionB);
  ExpectServing(*outputs_b_, *checksums_b_, kVersionB);
}

TEST_F(TensorUpdateTest, FromDiskRejectsMissingAndMismatchedCheckpoints) {
  EXPECT_THAT(UpdateFromDisk(*engine_, ckpt_->a + "_does_not_exist", kVersionB).status(),
              StatusIs(absl::StatusCode::kNotFound));
  engine::TinyModelOptions other = CheckpointOptions(3);
  other.hidden = 32;
  ASSERT_OK_AND_ASSIGN(std::string other_dir, MakeTinyModel("ws_ckpt_hidden32", other));
  EXPECT_THAT(UpdateFromDisk(*engine_, other_dir, kVersionB).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shape")));
  ExpectServing(outputs_a_, checksums_a_, kVersionA);
}

}  // namespace
}  // namespace colo::test_util
