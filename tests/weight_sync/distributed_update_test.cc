// colo-weight-sender (the real binary, a child process) updates two real
// colo-engine processes from checkpoint A to checkpoint B over Gloo on
// 127.0.0.1; afterwards both generate exactly what an engine started on B
// generates, hold B's bytes (GetWeightChecksums) and report B's version.
#include <sys/wait.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/status/status_macros.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

// Runs colo-weight-sender to completion; returns its log on success.
absl::StatusOr<std::string> RunSender(const std::vector<TestEngine*>& engines,
                                      const std::string& checkpoint, const std::string& version,
                                      std::vector<std::string> extra = {}) {
  std::vector<std::string> addresses;
  for (TestEngine* e : engines) addresses.push_back(e->address());
  std::vector<std::string> args = {
      absl::StrCat("--engines=", absl::StrJoin(addresses, ",")),
      absl::StrCat("--checkpoint=", checkpoint), absl::StrCat("--weight_version=", version),
      "--master_port=0", "--bucket_bytes=65536", "--init_timeout_ms=30000",
      "--transfer_timeout_ms=30000"};
  args.insert(args.end(), extra.begin(), extra.end());
  ASSIGN_OR_RETURN(auto child, ChildProcess::Spawn(RunfilePath("weight_sync/colo-weight-sender"),
                                                   args, "colo-weight-sender"));
  ASSIGN_OR_RETURN(int status, child->Wait(absl::Seconds(120)));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(
        absl::StrCat("colo-weight-sender wait status ", status, ": ", child->LogTail()));
  }
  return child->LogTail();
}

class DistributedUpdateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(ckpt_, MakeCheckpoints());
    ASSERT_OK_AND_ASSIGN(ref_b_, StartEngine(ckpt_.b, kVersionB));
    ASSERT_OK_AND_ASSIGN(expected_b_, GreedyOutputs(*ref_b_));
    ASSERT_OK_AND_ASSIGN(checksums_b_, WeightChecksums(*ref_b_));
  }
  Checkpoints ckpt_;
  std::unique_ptr<TestEngine> ref_b_;
  Outputs expected_b_;
  Checksums checksums_b_;
};

TEST_F(DistributedUpdateTest, SenderUpdatesTwoEnginesToCheckpointB) {
  ASSERT_OK_AND_ASSIGN(auto e1, StartEngine(ckpt_.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(auto e2, StartEngine(ckpt_.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(Outputs before, GreedyOutputs(*e1));
  ASSERT_OK_AND_ASSIGN(Checksums sums_a, WeightChecksums(*e1));
  // The checkpoints really differ (else the test could not fail).
  ASSERT_NE(before.tokens, expected_b_.tokens);
  ASSERT_NE(sums_a.crc, checksums_b_.crc);
  EXPECT_THAT(before.versions, ::testing::Each(std::string(kVersionA)));

  ASSERT_OK_AND_ASSIGN(std::string log,
                       RunSender({e1.get(), e2.get()}, ckpt_.b, kVersionB));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("engine ", e1->address(), ": version ", kVersionB)));
  EXPECT_THAT(log, HasSubstr(absl::StrCat("engine ", e2->address(), ": version ", kVersionB)));

  for (TestEngine* e : {e1.get(), e2.get()}) {
    SCOPED_TRACE(e->address());
    ASSERT_OK_AND_ASSIGN(Outputs after, GreedyOutputs(*e));
    EXPECT_EQ(after.tokens, expected_b_.tokens);
    EXPECT_THAT(after.versions, ::testing::Each(std::string(kVersionB)));
    ASSERT_OK_AND_ASSIGN(auto info, e->Info());
    EXPECT_EQ(info.weight_version(), kVersionB);
    ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(*e));
    EXPECT_EQ(sums.crc, checksums_b_.crc);
    EXPECT_EQ(sums.weight_version, kVersionB);
    // The sender destroyed the group: the name is free again.
    EXPECT_THAT(DestroyGroup(*e, "weight_update_group"), StatusIs(absl::StatusCode::kNotFound));
  }
}

// The colocated cycle: pause, release weights + KV cache, resume only the
// weights, update, resume the KV cache, continue -> B's outputs.
TEST_F(DistributedUpdateTest, UpdateIntoResumedWeightsAfterRelease) {
  ASSERT_OK_AND_ASSIGN(auto e, StartEngine(ckpt_.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(Outputs before, GreedyOutputs(*e));
  ASSERT_NE(before.tokens, expected_b_.tokens);
  ASSERT_OK(e->Pause("abort").status());
  ASSERT_OK(e->Release({"weights", "kv_cache"}).status());
  ASSERT_OK(e->Resume({"weights"}).status());
  ASSERT_OK(RunSender({e.get()}, ckpt_.b, kVersionB).status());
  ASSERT_OK(e->Resume({"kv_cache"}).status());
  ASSERT_OK(e->Continue(true).status());
  ASSERT_OK_AND_ASSIGN(Outputs after, GreedyOutputs(*e));
  EXPECT_EQ(after.tokens, expected_b_.tokens);
  EXPECT_THAT(after.versions, ::testing::Each(std::string(kVersionB)));
  ASSERT_OK_AND_ASSIGN(Checksums sums, WeightChecksums(*e));
  EXPECT_EQ(sums.crc, checksums_b_.crc);
}

}  // namespace
}  // namespace colo::test_util
