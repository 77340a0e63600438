// Every weight-update RPC is refused (FAILED_PRECONDITION) while a request
// is generating on a real colo-engine, and the running request keeps the
// old weights to its last token (DESIGN.md: updates only while paused or
// idle; no request may see a mix of versions).
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"
#include "weight_sync/sender.h"

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

// The engine is idle when UpdateWeightsFromDistributed starts (so the
// lifecycle check passes); a long request arrives while the buckets are on
// the wire and is generating when the commit comes. Whatever the engine
// does (refuse the commit, or hold it), the request must not see a mix:
// its tokens are exactly A's (and it reports A) or exactly B's (and it
// reports B).
TEST(UpdateWhileGeneratingTest, RequestStartedMidTransferNeverSeesAMix) {
  ASSERT_OK_AND_ASSIGN(Checkpoints ckpt, MakeCheckpoints());
  ASSERT_OK_AND_ASSIGN(auto engine, StartEngine(ckpt.a, kVersionA));
  ASSERT_OK_AND_ASSIGN(auto b, engine::SafetensorsCheckpoint::Open(ckpt.b));
  ASSERT_OK_AND_ASSIGN(auto tensors, weight_sync::TensorsFromCheckpoint(*b));
  const v1::GenerateRequest request = GreedyRequest(Prompt(9, 8, 256), kLongGeneration);
  GenerateResult on_a = engine->Generate(request);
  ASSERT_TRUE(on_a.status.ok()) << on_a.status.error_message();

  ASSERT_OK_AND_ASSIGN(auto transport, FormGroup({engine.get()}, "g_mid", absl::Seconds(30),
                                                 absl::Seconds(30)));
  constexpr int64_t kBucket = 16 << 10;
  absl::StatusOr<v1::UpdateWeightsResponse> reply;
  std::thread rpc([&] {
    reply = UpdateFromDistributed(
        *engine, DistributedRequest(tensors, "g_mid", kVersionB, kBucket), absl::Seconds(60));
  });
  std::unique_ptr<GenerateStream> stream;
  int running_at_commit = -1;
  weight_sync::SendOptions so;
  so.transport = transport.get();
  so.bucket_bytes = kBucket;
  so.after_bucket_for_testing = [&](int64_t sent) {
    if (sent != 1) return;
    // Between bucket 1 and 2: start the request and wait for its first token.
    stream = std::make_unique<GenerateStream>(engine->stub(), request);
    ASSERT_TRUE(stream->ReadUntil(1));
    auto info = engine->Info();
    if (info.ok()) running_at_commit = info->num_running();
  };
  absl::Status sent = weight_sync::SendUpdate(so, tensors).status();
  rpc.join();
  ASSERT_NE(stream, nullptr);
  GenerateResult mid = stream->Finish();
  ASSERT_TRUE(mid.status.ok()) << mid.status.error_message();
  ASSERT_EQ(running_at_commit, 1) << "the request was not running during the transfer";

  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  GenerateResult after = engine->Generate(request);
  ASSERT_TRUE(after.status.ok());
  EXPECT_EQ(after.weight_version, info.weight_version());
  if (reply.ok()) {
    EXPECT_OK(sent);
    EXPECT_EQ(info.weight_version(), kVersionB);
    EXPECT_NE(after.tokens, on_a.tokens);
  } else {
    EXPECT_EQ(info.weight_version(), kVersionA) << reply.status();
    EXPECT_EQ(after.tokens, on_a.tokens);
  }
  // The request that ran across the commit: all A or all B, never a mix.
  if (mid.weight_version == kVersionA) {
    EXPECT_EQ(mid.tokens, on_a.tokens) << "reported A but generated other tokens";
  } else {
    EXPECT_EQ(mid.weight_version, kVersionB);
    EXPECT_EQ(mid.tokens, after.tokens)
        << "a request that started on A and ended on B: it saw a mix of weights (update reply: "
        << reply.status() << ")";
  }
}

}  // namespace
}  // namespace colo::test_util
