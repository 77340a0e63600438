// Every weight-update RPC is refused (FAILED_PRECONDITION) while a request
// is generating on a real colo-engine, and the running request keeps the
// old weights to its last token (DESIGN.md: updates only while paused or
// idle; no request may see a mix of versions).
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

constexpr int kLongGeneration = 1900;

TEST(UpdateWhileGeneratingTest, EveryUpdateRpcIsFailedPrecondition) {
  ASSERT_OK_AND_ASSIGN(Checkpoints ckpt, MakeCheckpoints());
  ASSERT_OK_AND_ASSIGN(auto engine, StartEngine(ckpt.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(auto b, engine::SafetensorsCheckpoint::Open(ckpt.b));
  const v1::GenerateRequest request = GreedyRequest(Prompt(7, 8, 256), kLongGeneration);
  // What the long request generates on A alone (the oracle for "no mix").
  GenerateResult alone = engine->Generate(request);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
  ASSERT_EQ(alone.tokens.size(), static_cast<size_t>(kLongGeneration));

  bool caught = false;
  // The updates must arrive while the request runs; if it happened to end
  // before (shared VM), restore A and try again.
  for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
    GenerateStream stream(engine->stub(), request);
    ASSERT_TRUE(stream.ReadUntil(1));
    std::vector<absl::Status> s = TryAllUpdates(*engine, ckpt.b, *b, kVersionB);
    ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
    GenerateResult r = stream.Finish();
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    if (info.num_running() == 0) {
      ASSERT_OK(UpdateFromDisk(*engine, ckpt.a, kVersionA).status());
      continue;
    }
    // The request ran from before the first update until after the last.
    caught = true;
    for (size_t i = 0; i < s.size(); ++i) {
      EXPECT_THAT(s[i], StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("running")))
          << kUpdateRpcNames[i] << " while " << info.num_running() << " request(s) ran";
    }
    EXPECT_EQ(info.weight_version(), kVersionA);
    EXPECT_EQ(r.weight_version, kVersionA);
    EXPECT_EQ(r.tokens, alone.tokens) << "the running request saw other weights";
  }
  EXPECT_TRUE(caught) << "no attempt overlapped the updates with a running generation";
}

}  // namespace
}  // namespace colo::test_util
