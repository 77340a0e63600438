// Faults of a TP=2 engine (real processes): a rank killed mid-generation or
// mid-update, or stopped (SIGSTOP) while idle, turns the engine FAILED with
// the rank named (GetServerInfo state/reason, "colo.generate" NOT_SERVING),
// the calls in flight end with an error naming it, later calls fail at
// once, and nothing waits past the deadlines (collectives 20 s, heartbeat
// 3 s: TpFlags).
#include <signal.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/tp/tp_fixture.h"
#include "tests/util/status_matchers.h"
#include "tests/weight_sync/weight_sync_fixture.h"
#include "weight_sync/sender.h"

namespace colo::test_util {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr int kVocab = 512;

absl::StatusOr<std::string> Model() {
  engine::TinyModelOptions m;
  m.layers = 2;
  m.hidden = 64;
  m.heads = 4;
  m.kv_heads = 2;
  m.vocab = kVocab;
  m.max_position = 4096;
  m.seed = 17;
  return MakeTinyModel("tp_fault", m);
}

// Polls the "colo.generate" health until `want` (bounded); returns the last.
std::string WaitForHealth(const std::string& address, const std::string& want) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  std::string last;
  while (absl::Now() < deadline) {
    last = CheckHealth(address, "colo.generate").value_or("error");
    if (last == want) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return last;
}

void ExpectFailedNaming(TestEngine& engine, const std::string& rank, const std::string& cause) {
  ASSERT_OK_AND_ASSIGN(auto info, WaitForFailed(engine, absl::Seconds(20)));
  EXPECT_EQ(info.state(), "failed");
  EXPECT_THAT(info.reason(), AllOf(HasSubstr(rank), HasSubstr(cause)));
  EXPECT_EQ(WaitForHealth(engine.address(), "NOT_SERVING"), "NOT_SERVING");
  // Later calls fail at once (the engine needs a restart).
  const absl::Time start = absl::Now();
  GenerateResult later = engine.Greedy({1, 2, 3}, 4);
  EXPECT_EQ(later.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(later.status.error_message(), HasSubstr(rank));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_THAT(engine.Pause("abort"), StatusIs(absl::StatusCode::kUnavailable, HasSubstr(rank)));
  // Rank 0 still stops cleanly.
  EXPECT_THAT(engine.process().Terminate(), IsOkAndHolds(0));
}

TEST(TpFaultTest, RankKilledMidGenerationFailsTheEngineNamingIt) {
  ASSERT_OK_AND_ASSIGN(std::string dir, Model());
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir, TpFlags(2)));
  ASSERT_OK_AND_ASSIGN(int64_t rank1, RankPid(*engine, 1));
  GenerateStream stream(engine->stub(), GreedyRequest(Prompt(1, 12, kVocab), 3000));
  ASSERT_TRUE(stream.ReadUntil(5));
  const absl::Time killed = absl::Now();
  ASSERT_EQ(kill(static_cast<pid_t>(rank1), SIGKILL), 0);
  GenerateResult r = stream.Finish();
  const absl::Duration took = absl::Now() - killed;
  std::printf("generation failed %s after the kill: %s\n", absl::FormatDuration(took).c_str(),
              r.status.error_message().c_str());
  EXPECT_FALSE(r.status.ok());
  EXPECT_THAT(r.status.error_message(), HasSubstr("rank 1"));
  EXPECT_LT(took, absl::Seconds(20));
  ExpectFailedNaming(*engine, "tensor-parallel rank 1", "closed its control connection");
}

TEST(TpFaultTest, StoppedRankMissesTheHeartbeat) {
  ASSERT_OK_AND_ASSIGN(std::string dir, Model());
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir, TpFlags(2)));
  ASSERT_TRUE(engine->Greedy(Prompt(2, 7, kVocab), 4).status.ok());
  ASSERT_OK_AND_ASSIGN(int64_t rank1, RankPid(*engine, 1));
  ASSERT_EQ(kill(static_cast<pid_t>(rank1), SIGSTOP), 0);
  ExpectFailedNaming(*engine, "tensor-parallel rank 1", "missed its heartbeat");
  kill(static_cast<pid_t>(rank1), SIGCONT);
  // Rank 0 is gone: the stopped rank exits too.
  EXPECT_TRUE(ProcessGone(rank1, absl::Seconds(30)));
}

TEST(TpFaultTest, RankKilledMidUpdateFailsTheUpdateAndTheEngine) {
  ASSERT_OK_AND_ASSIGN(Checkpoints ckpt, MakeCheckpoints());
  ASSERT_OK_AND_ASSIGN(auto engine,
                       TestEngine::Start(ckpt.a, TpFlags(2, {"--kv_cache_bytes=8000000"})));
  ASSERT_OK_AND_ASSIGN(int64_t rank1, RankPid(*engine, 1));
  weight_sync::WeightSenderOptions so;
  so.engines = {engine->address()};
  so.engine_ranks = {2};
  so.bucket_bytes = 8192;  // many buckets: the kill lands mid-update
  so.init_timeout = absl::Seconds(30);
  so.transfer_timeout = absl::Seconds(10);
  so.after_bucket_for_testing = [rank1](int64_t buckets) {
    if (buckets == 2) kill(static_cast<pid_t>(rank1), SIGKILL);
  };
  ASSERT_OK_AND_ASSIGN(auto sender, weight_sync::WeightSender::Connect(so));
  ASSERT_OK_AND_ASSIGN(auto b, engine::SafetensorsCheckpoint::Open(ckpt.b));
  ASSERT_OK_AND_ASSIGN(auto tensors, weight_sync::TensorsFromCheckpoint(*b));
  std::vector<weight_sync::EngineUpdateResult> results;
  const absl::Time start = absl::Now();
  absl::StatusOr<weight_sync::SendReport> sent =
      sender->Update(tensors, kVersionB, /*flush_cache=*/true, &results);
  std::printf("update ended after %s: %s\n", absl::FormatDuration(absl::Now() - start).c_str(),
              sent.status().ToString().c_str());
  EXPECT_FALSE(sent.ok());
  // Bounded by the transfer timeout (rank 0's receive waits in Gloo).
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
  EXPECT_THAT(sent.status().message(), HasSubstr("tensor-parallel rank 1"));
  ExpectFailedNaming(*engine, "tensor-parallel rank 1", "closed its control connection");
}

}  // namespace
}  // namespace colo::test_util
