// Weight updates of a TP=2 engine (checkpoints A and B of the weight-sync
// tests): each rank joins the update group itself (ranks rank_offset and
// rank_offset + 1), receives the full tensors and keeps its shard; after
// the update GetWeightChecksums (combined from the ranks' shards) equals an
// unsharded engine started on B. Also from a gRPC chunk stream (rank 0
// forwards the chunks) and from disk; an update that fails (a stream that
// ends without its commit) changes no rank.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tp/tp_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"
#include "weight_sync/sender.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<TestEngine>> StartTp2(const std::string& dir,
                                                     const std::string& version) {
  return TestEngine::Start(dir, TpFlags(2, {"--kv_cache_bytes=8000000", "--page_size=8",
                                            absl::StrCat("--weight_version=", version)}));
}

class TpWeightUpdateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ckpt_, MakeCheckpoints());
    ASSERT_OK_AND_ASSIGN(auto ref_b, StartEngine(ckpt_.b, kVersionB));
    ASSERT_OK_AND_ASSIGN(sums_b_, WeightChecksums(*ref_b));
    ASSERT_OK_AND_ASSIGN(expected_b_, GreedyOutputs(*ref_b));
  }
  Checkpoints ckpt_;
  Checksums sums_b_;
  Outputs expected_b_;
};

TEST_F(TpWeightUpdateTest, GlooGroupUpdatesATp2AndATp1EngineToCheckpointB) {
  ASSERT_OK_AND_ASSIGN(auto tp2, StartTp2(ckpt_.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(auto tp1, StartEngine(ckpt_.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(Checksums sums_a, WeightChecksums(*tp2));
  ASSERT_NE(sums_a.crc, sums_b_.crc);

  weight_sync::WeightSenderOptions so;
  so.engines = {tp2->address(), tp1->address()};
  so.engine_ranks = {2, 1};  // world 4: trainer 0, tp2 ranks 1-2, tp1 rank 3
  so.bucket_bytes = 65536;
  so.init_timeout = absl::Seconds(30);
  so.transfer_timeout = absl::Seconds(30);
  ASSERT_OK_AND_ASSIGN(auto sender, weight_sync::WeightSender::Connect(so));
  ASSERT_OK_AND_ASSIGN(auto checkpoint, engine::SafetensorsCheckpoint::Open(ckpt_.b));
  ASSERT_OK_AND_ASSIGN(auto tensors, weight_sync::TensorsFromCheckpoint(*checkpoint));
  std::vector<weight_sync::EngineUpdateResult> results;
  ASSERT_OK(sender->Update(tensors, kVersionB, /*flush_cache=*/true, &results).status());
  ASSERT_OK(sender->DestroyGroup());

  for (TestEngine* e : {tp2.get(), tp1.get()}) {
    SCOPED_TRACE(e->address());
    ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(*e));
    EXPECT_EQ(sums.crc, sums_b_.crc);
    EXPECT_EQ(sums.weight_version, kVersionB);
    ASSERT_OK_AND_ASSIGN(Outputs after, GreedyOutputs(*e));
    EXPECT_THAT(after.versions, ::testing::Each(std::string(kVersionB)));
  }
  // The unsharded engine's tokens equal the reference (the same kernels);
  // the TP engine's agree except where a near-tie flipped (rare).
  ASSERT_OK_AND_ASSIGN(Outputs tp1_after, GreedyOutputs(*tp1));
  EXPECT_EQ(tp1_after.tokens, expected_b_.tokens);
  EXPECT_THAT(tp2->process().Terminate(), IsOkAndHolds(0));
}

TEST_F(TpWeightUpdateTest, ChunkStreamAndDiskUpdatesReachEveryRank) {
  ASSERT_OK_AND_ASSIGN(auto tp2, StartTp2(ckpt_.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(Checksums sums_a, WeightChecksums(*tp2));
  ASSERT_OK_AND_ASSIGN(auto b, engine::SafetensorsCheckpoint::Open(ckpt_.b));
  ASSERT_OK(UpdateFromTensor(*tp2, CheckpointChunks(*b, 50000, kVersionB)).status());
  ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(*tp2));
  EXPECT_EQ(sums.crc, sums_b_.crc);
  EXPECT_EQ(sums.weight_version, kVersionB);

  // A stream that ends without its commit changes no rank.
  ASSERT_OK_AND_ASSIGN(auto a, engine::SafetensorsCheckpoint::Open(ckpt_.a));
  std::vector<v1::WeightChunk> truncated = CheckpointChunks(*a, 50000, kVersionA);
  truncated.pop_back();
  EXPECT_THAT(UpdateFromTensor(*tp2, truncated).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("without a commit")));
  ASSERT_OK_AND_ASSIGN(sums, WeightChecksums(*tp2));
  EXPECT_EQ(sums.crc, sums_b_.crc);

  // From disk: every rank reads its shard of the checkpoint.
  ASSERT_OK(UpdateFromDisk(*tp2, ckpt_.a, kVersionA).status());
  ASSERT_OK_AND_ASSIGN(sums, WeightChecksums(*tp2));
  EXPECT_EQ(sums.crc, sums_a.crc);
  EXPECT_EQ(sums.weight_version, kVersionA);

  // A group whose world has no room for both ranks is refused up front.
  EXPECT_THAT(InitGroup(*tp2, GroupRequest("small", 1, 1, 2, absl::Seconds(5), absl::Seconds(5)))
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tensor-parallel ranks")));
  ASSERT_OK_AND_ASSIGN(auto info, tp2->Info());
  EXPECT_EQ(info.state(), "serving");
}

}  // namespace
}  // namespace colo::test_util
