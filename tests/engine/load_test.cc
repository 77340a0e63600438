// Load: 64 concurrent streaming clients while another client interleaves
// pauses of every mode with continues. Requests caught by `abort` end with
// finish_reason abort and a prefix of their tokens, and the client resends
// them; every client ends with exactly the unpaused greedy tokens, and the
// KV accounting checker reports no violation afterwards.
#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"

#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

constexpr int kVocab = 256;
constexpr int kClients = 64;
constexpr int kMaxNew = 96;

TEST(LoadTest, SixtyFourStreamingClientsWithInterleavedPausesFinishCorrectly) {
  engine::TinyModelOptions m;
  m.layers = 2;
  m.hidden = 64;
  m.vocab = kVocab;
  m.max_position = 512;
  m.seed = 3;
  ASSERT_OK_AND_ASSIGN(std::string dir, MakeTinyModel("load_llama", m));
  // A KV cache small enough that decode runs out of pages: retraction too.
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir, {"--kv_cache_bytes=1200000",
                                                           "--page_size=4"}));
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kClients; ++i) {
    // Shared prefixes for half the clients: radix reuse under load.
    std::vector<int32_t> p = i % 2 == 0 ? Prompt(999, 16, kVocab) : std::vector<int32_t>();
    const std::vector<int32_t> tail = Prompt(i, 4 + i % 23, kVocab);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
  }
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(dir, prompts, kMaxNew));

  // Progress seen by the clients: the pausing thread waits for generation
  // to move on between pauses.
  absl::Mutex mu;
  int64_t tokens_seen = 0;
  int done = 0;
  std::atomic<int> aborted{0};
  std::vector<GenerateResult> results(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      for (int attempt = 0; attempt < 50; ++attempt) {
        GenerateStream stream(engine->stub(), GreedyRequest(prompts[i], kMaxNew));
        size_t seen = 0;
        while (stream.ReadUntil(seen + 1)) {
          absl::MutexLock lock(&mu);
          tokens_seen += static_cast<int64_t>(stream.tokens().size() - seen);
          seen = stream.tokens().size();
        }
        GenerateResult r = stream.Finish();
        if (r.status.ok() && r.finish_reason == "abort") {
          // Partial output: a prefix of the unpaused run.
          EXPECT_EQ(r.tokens, std::vector<int32_t>(expected[i].begin(),
                                                   expected[i].begin() + r.tokens.size()))
              << "client " << i;
          ++aborted;
          continue;
        }
        results[i] = r;
        break;
      }
      absl::MutexLock lock(&mu);
      ++done;
    });
  }
  // Interleave pauses of every mode with continues until the clients finish,
  // letting a few batches of tokens through between pauses.
  const std::vector<std::string> modes = {"retract", "in_place", "retract", "in_place", "abort"};
  int pauses = 0;
  while (true) {
    {
      absl::MutexLock lock(&mu);
      const int64_t target = tokens_seen + 64;
      auto progressed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
        return tokens_seen >= target || done == kClients;
      };
      mu.AwaitWithTimeout(absl::Condition(&progressed), absl::Seconds(60));
      if (done == kClients) break;
    }
    // Enough pauses of every mode: then let the clients finish.
    if (pauses == 30) continue;
    ASSERT_OK(engine->Pause(modes[pauses % modes.size()]).status());
    ASSERT_OK(engine->Continue(pauses % 2 == 0).status());
    ++pauses;
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << "client " << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].finish_reason, "length") << "client " << i;
    EXPECT_EQ(results[i].tokens, expected[i]) << "client " << i;
  }
  EXPECT_GE(pauses, 10) << "the clients finished before the pauses were exercised";
  std::cout << "pauses " << pauses << ", aborted and resent " << aborted.load() << "\n";

  // Idle again: the checker ran and found nothing; no page is in flight.
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_GT(info.kv_audits(), 0);
  EXPECT_EQ(info.kv_audit_violations(), 0) << info.last_kv_audit_error();
  ASSERT_OK_AND_ASSIGN(auto memory, engine->Memory());
  for (const auto& pool : memory.memory().kv_pools()) {
    EXPECT_EQ(pool.in_flight_pages(), 0) << pool.pool();
    EXPECT_EQ(pool.free_pages() + pool.evictable_pages() + pool.protected_pages() +
                  pool.session_held_pages() + pool.in_flight_pages(),
              pool.capacity_pages())
        << pool.pool();
  }
}

}  // namespace
}  // namespace colo::test_util
