// In-process tests of the Scheduler on the CPU backend with a real tiny
// model, KV cache manager and tagged pool: concurrency (many submitting
// threads, commands racing steps), pause modes, retraction under KV pressure,
// release/resume and weight commits. Also run under --config=asan and
// --config=tsan (the engine's concurrency lives here).
#include "engine/scheduler/scheduler.h"

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "engine/device/cpu_backend.h"
#include "engine/model/offline_generator.h"
#include "engine/model/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

constexpr int kVocab = 64;

std::vector<int32_t> Prompt(int seed, int len) {
  std::vector<int32_t> out;
  uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(seed + 1);
  for (int i = 0; i < len; ++i) {
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    out.push_back(static_cast<int32_t>((x >> 17) % kVocab));
  }
  return out;
}

struct Collected {
  std::vector<int32_t> tokens;
  FinishReason reason = FinishReason::kNone;
  absl::Status error;
};

// Tokens seen by collecting threads, for tests that wait for progress.
struct Progress {
  absl::Mutex mu;
  int64_t tokens ABSL_GUARDED_BY(mu) = 0;
  int finished_clients ABSL_GUARDED_BY(mu) = 0;
  // Blocks until `n` more tokens than now were seen, or `clients` clients
  // finished (or 60 s). Returns false once every client finished.
  bool WaitForMore(int64_t n, int clients) {
    absl::MutexLock lock(&mu);
    const int64_t target = tokens + n;
    auto reached = [this, target, clients]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return tokens >= target || finished_clients >= clients;
    };
    mu.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60));
    return finished_clients < clients;
  }
  void ClientDone() {
    absl::MutexLock lock(&mu);
    ++finished_clients;
  }
};

Collected Collect(RequestStream& stream, Progress* progress = nullptr) {
  Collected c;
  while (true) {
    StreamChunk chunk = stream.Next(absl::Now() + absl::Seconds(120));
    c.tokens.insert(c.tokens.end(), chunk.tokens.begin(), chunk.tokens.end());
    if (progress != nullptr) {
      absl::MutexLock lock(&progress->mu);
      progress->tokens += static_cast<int64_t>(chunk.tokens.size());
    }
    if (chunk.finished) {
      c.reason = chunk.finish.reason;
      c.error = chunk.error;
      return c;
    }
  }
}

class SchedulerTest : public ::testing::Test {
 protected:
  void Start(int64_t kv_tokens, int page_size = 4, bool host_backup = false,
             std::vector<LayerType> layer_types = {}, int window = 0) {
    TinyModelOptions m;
    m.layers = static_cast<int>(layer_types.empty() ? 2 : layer_types.size());
    m.hidden = 32;
    m.heads = 4;
    m.kv_heads = 2;
    m.vocab = kVocab;
    m.max_position = 512;
    m.layer_types = layer_types;
    m.sliding_window = window;
    m.seed = 9;
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp ? tmp : "/tmp") + "/sched_model_" + std::to_string(layer_types.size());
    ASSERT_OK(WriteTinyModel(m, dir_));
    backend_ = std::move(CpuBackend::Create({})).value();
    TaggedPool::Options po;
    po.backend = backend_.get();
    if (host_backup) po.backup[static_cast<int>(MemoryTag::kWeights)] = BackupPolicy::kHostCopy;
    pool_ = std::move(TaggedPool::Create(po)).value();
    CachingAllocator::Options ao;
    ao.backend = backend_.get();
    allocator_ = std::move(CachingAllocator::Create(ao)).value();
    threads_ = std::make_unique<kernels::ThreadPool>(1);
    TransformerModel::Options mo;
    mo.model_dir = dir_;
    mo.weights_pool = pool_.get();
    mo.allocator = allocator_.get();
    mo.threads = threads_.get();
    model_ = std::move(TransformerModel::Load(mo)).value();
    kvcache::KvCacheManager::Options ko;
    ko.page_size = page_size;
    ko.num_layers = m.layers;
    for (LayerType t : model_->config().layer_types) {
      ko.layer_is_sliding.push_back(t == LayerType::kSlidingAttention);
    }
    ko.sliding_window = window;
    ko.kv_heads = 2;
    ko.head_dim = 8;
    ko.full_capacity_tokens = kv_tokens;
    ko.swa_capacity_tokens = window > 0 ? kv_tokens : 0;
    ko.max_requests = 64;
    ko.max_context_tokens = 256;
    ko.audit_every_op = false;
    kv_ = std::move(kvcache::KvCacheManager::Create(ko, pool_.get())).value();
    SchedulerOptions so;
    so.max_running_requests = 16;
    so.chunked_prefill_tokens = 8;  // several chunks per prompt
    so.max_batch_tokens = 64;
    so.session_idle_timeout = session_idle_timeout_;
    scheduler_ = std::make_unique<Scheduler>(so, model_.get(), kv_.get(), pool_.get(),
                                             allocator_.get());
    scheduler_->Start();
  }

  void TearDown() override {
    if (scheduler_ != nullptr) scheduler_->Stop();
  }

  std::vector<std::vector<int32_t>> Oracle(const std::vector<std::vector<int32_t>>& prompts,
                                           int max_new) {
    std::vector<GenerationRequest> requests;
    for (const auto& p : prompts) {
      GenerationRequest r;
      r.prompt = p;
      r.max_new_tokens = max_new;
      requests.push_back(r);
    }
    auto out = GenerateOffline(*model_, requests, {}, pool_.get());
    EXPECT_TRUE(out.ok()) << out.status();
    std::vector<std::vector<int32_t>> tokens;
    for (const auto& g : *out) tokens.push_back(g.tokens);
    return tokens;
  }

  std::shared_ptr<RequestStream> Submit(const std::vector<int32_t>& prompt, int max_new,
                                        const std::string& session = "") {
    GenerateSpec spec;
    spec.input_ids = prompt;
    spec.max_new_tokens = max_new;
    spec.session_id = session;
    auto stream = scheduler_->Submit(spec);
    EXPECT_TRUE(stream.ok()) << stream.status();
    return stream.ok() ? *stream : nullptr;
  }

  absl::Duration session_idle_timeout_ = absl::Minutes(30);
  std::string dir_;
  std::unique_ptr<CpuBackend> backend_;
  std::unique_ptr<TaggedPool> pool_;
  std::unique_ptr<CachingAllocator> allocator_;
  std::unique_ptr<kernels::ThreadPool> threads_;
  std::unique_ptr<TransformerModel> model_;
  std::unique_ptr<kvcache::KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, ConcurrentSubmittersGetTheOracleTokens) {
  Start(/*kv_tokens=*/2048);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 12; ++i) prompts.push_back(Prompt(i, 3 + 5 * i % 29));
  const auto expected = Oracle(prompts, 12);
  std::vector<Collected> got(prompts.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = Collect(*Submit(prompts[i], 12)); });
  }
  for (auto& t : threads) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i].tokens, expected[i]) << i;
    EXPECT_EQ(got[i].reason, FinishReason::kLength);
  }
  // The snapshot is published after each loop iteration and before every
  // command's answer: a command makes it current.
  ASSERT_OK(scheduler_->RunBetweenSteps("sync", [](bool) { return absl::OkStatus(); }));
  SchedulerSnapshot s = scheduler_->Snapshot();
  EXPECT_EQ(s.generated_tokens_total, 12 * 12);
}

TEST_F(SchedulerTest, PausesOfEveryModeRacingStepsKeepTokensExact) {
  Start(/*kv_tokens=*/4096);
  constexpr int kMaxNew = 150;  // long enough that pauses land mid-generation
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 8; ++i) prompts.push_back(Prompt(100 + i, 10 + i));
  const auto expected = Oracle(prompts, kMaxNew);
  std::vector<Collected> got(prompts.size());
  std::vector<std::thread> threads;
  Progress progress;
  for (size_t i = 0; i < prompts.size(); ++i) {
    threads.emplace_back([&, i] {
      for (int attempt = 0; attempt < 50; ++attempt) {
        got[i] = Collect(*Submit(prompts[i], kMaxNew), &progress);
        if (got[i].reason != FinishReason::kAbort) break;
        // Aborted: what it had is a prefix of the unpaused run.
        EXPECT_EQ(got[i].tokens,
                  std::vector<int32_t>(expected[i].begin(), expected[i].begin() + got[i].tokens.size()));
      }
      progress.ClientDone();
    });
  }
  const PauseMode modes[] = {PauseMode::kRetract, PauseMode::kInPlace, PauseMode::kRetract,
                             PauseMode::kAbort};
  int held = 0;
  for (int i = 0; i < 12; ++i) {
    // Generation is under way again (or every client is done).
    if (!progress.WaitForMore(8, static_cast<int>(prompts.size()))) break;
    ASSERT_OK_AND_ASSIGN(PauseResult p, scheduler_->Pause(modes[i % 4]));
    held += p.num_aborted + p.num_retracted + p.num_kept;
    ASSERT_OK(scheduler_->Continue(i % 2 == 0).status());
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(held, 0) << "no pause caught a request in flight";
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(got[i].tokens, expected[i]) << i;
    EXPECT_EQ(got[i].reason, FinishReason::kLength) << i;
  }
}

TEST_F(SchedulerTest, RetractionUnderKvPressureKeepsTokensExact) {
  Start(/*kv_tokens=*/160, /*page_size=*/4);  // 16 requests x (prompt + 40) do not fit
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 10; ++i) prompts.push_back(Prompt(200 + i, 6));
  const auto expected = Oracle(prompts, 40);
  // Queued while paused, admitted together on Continue: their decode growth
  // (10 x 46 tokens) cannot fit 160 tokens of KV, so retraction must happen.
  ASSERT_OK(scheduler_->Pause(PauseMode::kInPlace).status());
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& p : prompts) streams.push_back(Submit(p, 40));
  ASSERT_OK(scheduler_->Continue(true).status());
  for (size_t i = 0; i < streams.size(); ++i) {
    Collected c = Collect(*streams[i]);
    ASSERT_OK(c.error);
    EXPECT_EQ(c.tokens, expected[i]) << i;
  }
  ASSERT_OK(scheduler_->RunBetweenSteps("sync", [](bool) { return absl::OkStatus(); }));
  EXPECT_GT(scheduler_->Snapshot().retractions_total, 0);
  EXPECT_OK(kv_->Audit());
}

TEST_F(SchedulerTest, ReleaseResumeWithHostBackupAndCommittedWeights) {
  Start(/*kv_tokens=*/1024, 4, /*host_backup=*/true);
  const std::vector<int32_t> prompt = Prompt(7, 9);
  const auto expected = Oracle({prompt}, 16);
  EXPECT_EQ(Collect(*Submit(prompt, 16)).tokens, expected[0]);
  // Release while generating (not paused) is refused; releasing kv_cache
  // while paused in place retracts the held request. The request must still
  // be running at both points: retry if this tiny model finished it first.
  std::shared_ptr<RequestStream> running;
  bool caught = false;
  for (int attempt = 0; attempt < 20 && !caught; ++attempt) {
    running = Submit(Prompt(8 + attempt, 9), 240);
    running->Next(absl::Now() + absl::Seconds(60));
    absl::Status refused = scheduler_->Release({}).status();
    if (refused.ok()) {  // the request had already finished: undo, retry
      ASSERT_OK(scheduler_->Resume({}).status());
      Collect(*running);
      continue;
    }
    EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
    ASSERT_OK_AND_ASSIGN(PauseResult p, scheduler_->Pause(PauseMode::kInPlace));
    if (p.num_kept == 1) {
      caught = true;
      break;
    }
    ASSERT_OK(scheduler_->Continue(true).status());
    Collect(*running);
  }
  ASSERT_TRUE(caught) << "the long request always finished before the release";
  ASSERT_OK_AND_ASSIGN(TagTransition t, scheduler_->Release({}));
  EXPECT_EQ(t.num_retracted, 1);
  EXPECT_THAT(scheduler_->Continue(true), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK(scheduler_->Resume({}).status());
  EXPECT_FALSE(scheduler_->Snapshot().state.needs_weights);  // host backup
  // A weight commit (no-op content) sets the version; not while released.
  ASSERT_OK(scheduler_->CommitWeights([] { return absl::OkStatus(); }, "v7", true));
  ASSERT_OK(scheduler_->Continue(true).status());
  Collected resumed = Collect(*running);
  EXPECT_EQ(resumed.reason, FinishReason::kLength);
  Collected again = Collect(*Submit(prompt, 16));
  EXPECT_EQ(again.tokens, expected[0]);
  EXPECT_EQ(scheduler_->Snapshot().weight_version, "v7");
}

TEST_F(SchedulerTest, PartialUpdateAfterResumeWithoutBackupStillNeedsWeights) {
  Start(/*kv_tokens=*/1024);  // weights without a host backup
  const std::vector<int32_t> prompt = Prompt(21, 9);
  const auto expected = Oracle({prompt}, 12);
  // What a trainer would re-send: every tensor's bytes.
  std::vector<std::pair<WeightInfo, std::vector<float>>> saved;
  for (const WeightInfo& w : model_->weights().List()) {
    saved.emplace_back(w, std::vector<float>(w.data, w.data + w.NumElements()));
  }
  ASSERT_GE(saved.size(), 2u);
  ASSERT_OK(scheduler_->Release({MemoryTag::kWeights}).status());
  ASSERT_OK(scheduler_->Resume({MemoryTag::kWeights}).status());
  EXPECT_TRUE(scheduler_->Snapshot().state.needs_weights);
  auto write = [this, &saved](size_t begin, size_t end) {
    return [this, &saved, begin, end]() -> absl::Status {
      for (size_t i = begin; i < end; ++i) {
        const auto& [info, bytes] = saved[i];
        absl::Status s = model_->weights().Overwrite(info.name, TensorDtype::kF32, info.shape,
                                                     bytes.data(), bytes.size() * sizeof(float));
        if (!s.ok()) return s;
      }
      return absl::OkStatus();
    };
  };
  // One tensor only: committed, but the others are still empty.
  ASSERT_OK(scheduler_->CommitWeights(write(0, 1), "v1-part", false));
  EXPECT_TRUE(scheduler_->Snapshot().state.needs_weights);
  GenerateSpec spec;
  spec.input_ids = prompt;
  spec.max_new_tokens = 4;
  spec.fail_if_unavailable = true;
  EXPECT_THAT(scheduler_->Submit(spec).status(),
              StatusIs(absl::StatusCode::kUnavailable,
                       ::testing::HasSubstr(absl::StrCat(saved.size() - 1, " tensor(s)"))));
  // The rest, in a second update: the engine serves the original outputs.
  ASSERT_OK(scheduler_->CommitWeights(write(1, saved.size()), "v1", false));
  EXPECT_FALSE(scheduler_->Snapshot().state.needs_weights);
  EXPECT_EQ(Collect(*Submit(prompt, 12)).tokens, expected[0]);
  EXPECT_EQ(scheduler_->Snapshot().weight_version, "v1");
}

TEST_F(SchedulerTest, UpdateInFlightHoldsAdmissionUntilItEnds) {
  Start(/*kv_tokens=*/1024);
  ASSERT_OK(scheduler_->BeginWeightUpdate("test update"));
  auto stream = Submit(Prompt(3, 5), 4);
  // Not admitted while the update is in flight.
  EXPECT_TRUE(stream->Next(absl::Now() + absl::Milliseconds(50)).empty());
  EXPECT_EQ(scheduler_->Snapshot().num_running, 0);
  // A second update is refused: a request is queued and the engine serves.
  EXPECT_THAT(scheduler_->BeginWeightUpdate("second"),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  scheduler_->EndWeightUpdate();
  EXPECT_EQ(Collect(*stream).tokens.size(), 4u);
}

TEST_F(SchedulerTest, SessionsOnSlidingWindowModelMatchFullHistory) {
  Start(/*kv_tokens=*/1024, /*page_size=*/4, false,
        {LayerType::kSlidingAttention, LayerType::kFullAttention}, /*window=*/5);
  ASSERT_OK_AND_ASSIGN(std::string session, scheduler_->OpenSession("", 0));
  std::vector<int32_t> history;
  for (int turn = 0; turn < 4; ++turn) {
    const std::vector<int32_t> input = Prompt(300 + turn, 3 + turn);
    std::vector<int32_t> full = history;
    full.insert(full.end(), input.begin(), input.end());
    const auto expected = Oracle({full}, 7);
    Collected c = Collect(*Submit(input, 7, session));
    ASSERT_OK(c.error);
    EXPECT_EQ(c.tokens, expected[0]) << "turn " << turn;
    history = full;
    history.insert(history.end(), c.tokens.begin(), c.tokens.end());
  }
  EXPECT_THAT(scheduler_->OpenSession(session, 0), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(int64_t freed, scheduler_->CloseSession(session));
  EXPECT_GT(freed, 0);
  EXPECT_THAT(scheduler_->CloseSession(session), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(kv_->Audit());
}

TEST_F(SchedulerTest, IdleSessionsAreClosedAfterTheTimeout) {
  session_idle_timeout_ = absl::Milliseconds(200);
  Start(/*kv_tokens=*/1024);
  ASSERT_OK_AND_ASSIGN(std::string session, scheduler_->OpenSession("s-idle", 0));
  ASSERT_OK(Collect(*Submit(Prompt(1, 6), 4, session)).error);
  // The scheduler checks expiry at least once a second; wait for it (a
  // timer-driven behaviour, bounded).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  int sessions = 1;
  while (sessions > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    ASSERT_OK(scheduler_->RunBetweenSteps("sync", [](bool) { return absl::OkStatus(); }));
    sessions = scheduler_->Snapshot().num_sessions;
  }
  EXPECT_EQ(sessions, 0);
  GenerateSpec spec;
  spec.input_ids = {1, 2};
  spec.max_new_tokens = 2;
  spec.session_id = session;
  EXPECT_THAT(scheduler_->Submit(spec), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_OK(kv_->Audit());
}

}  // namespace
}  // namespace colo::engine
