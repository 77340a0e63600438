// The memory bars of the single-rank engine (tests/engine pause_test and
// release_resume_test) against a TP=2 engine: pausing mid-generation with
// retract / in_place and continuing gives exactly the unpaused tokens;
// ReleaseTags frees every rank's memory (each rank's RSS drops by what it
// reported, and the controller's verification, in total and per rank,
// passes on the engine's real figures); weights resumed without a backup
// need an update on every rank, after which the engine serves the same
// tokens; ContinueGeneration empties every rank's allocator.
#include <thread>

#include "controller/verify.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/tp/tp_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

constexpr int kVocab = 4096;

class TpMemoryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::TinyModelOptions m;
    m.arch = "llama";
    m.layers = 4;
    m.hidden = 256;
    m.heads = 8;
    m.kv_heads = 4;
    m.vocab = kVocab;
    m.max_position = 1024;
    m.seed = 21;
    auto dir = MakeTinyModel("tp_memory", m);
    ASSERT_TRUE(dir.ok()) << dir.status();
    model_dir_ = new std::string(*dir);
    auto e = TestEngine::Start(*model_dir_, TpFlags(2, {"--kv_cache_bytes=33554432",
                                                        "--page_size=16"}));
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = e->release();
  }
  static void TearDownTestSuite() {
    if (engine_ == nullptr) return;
    auto code = engine_->process().Terminate();
    EXPECT_TRUE(code.ok() && *code == 0);
    delete engine_;
  }
  static std::string* model_dir_;
  static TestEngine* engine_;
};
std::string* TpMemoryTest::model_dir_ = nullptr;
TestEngine* TpMemoryTest::engine_ = nullptr;

TEST_F(TpMemoryTest, PauseMidGenerationThenContinueGivesUnpausedTokens) {
  const std::vector<std::vector<int32_t>> prompts = {Prompt(1, 20, kVocab), Prompt(2, 9, kVocab),
                                                     Prompt(3, 33, kVocab)};
  constexpr int kMaxNew = 300;
  // The TP engine is batch invariant: its unpaused run is the oracle.
  std::vector<GenerateResult> expected = GreedyTogether(*engine_, prompts, kMaxNew);
  for (const auto& r : expected) ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  for (const std::string mode : {"retract", "in_place"}) {
    bool caught = false;
    for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
      std::vector<std::unique_ptr<GenerateStream>> streams;
      for (const auto& p : prompts) {
        streams.push_back(
            std::make_unique<GenerateStream>(engine_->stub(), GreedyRequest(p, kMaxNew)));
      }
      ASSERT_TRUE(streams[0]->ReadUntil(5));
      ASSERT_OK_AND_ASSIGN(auto paused, engine_->Pause(mode));
      caught = (mode == "retract" ? paused.num_retracted() : paused.num_kept()) > 0;
      // Every rank answered the pause.
      ASSERT_EQ(paused.ranks_size(), 2);
      EXPECT_EQ(paused.ranks(1).rank(), 1);
      EXPECT_GT(paused.ranks(1).process_resident_bytes(), 0);
      ASSERT_OK_AND_ASSIGN(auto cont, engine_->Continue(true));
      ASSERT_EQ(cont.ranks_size(), 2);
      for (size_t i = 0; i < streams.size(); ++i) {
        GenerateResult r = streams[i]->Finish();
        ASSERT_TRUE(r.status.ok()) << r.status.error_message();
        EXPECT_EQ(r.tokens, expected[i].tokens) << "request " << i << " after pause(" << mode
                                                << ")";
      }
    }
    EXPECT_TRUE(caught) << "pause(" << mode << ") never caught a request in flight";
  }
}

TEST_F(TpMemoryTest, ReleaseFreesEveryRankAndWeightsComeBackWithAnUpdate) {
  const std::vector<int32_t> prompt = Prompt(7, 30, kVocab);
  GenerateResult before = engine_->Greedy(prompt, 16);
  ASSERT_TRUE(before.status.ok());
  ASSERT_OK(engine_->Pause("retract").status());
  controller::ReleaseEvidence evidence;
  evidence.address = engine_->address();
  evidence.tags = {"weights", "kv_cache", "cuda_graph"};
  ASSERT_OK_AND_ASSIGN(auto memory_before, engine_->Memory());
  evidence.before = memory_before.memory();
  ASSERT_OK_AND_ASSIGN(evidence.release, engine_->Release({}));
  ASSERT_OK_AND_ASSIGN(auto memory_after, engine_->Memory());
  evidence.after = memory_after.memory();
  const colo::v1::ReleaseTagsResponse& released = evidence.release;
  ASSERT_EQ(released.ranks_size(), 2);
  int64_t reported = 0;
  for (const auto& t : released.tags()) reported += t.bytes();
  EXPECT_GT(reported, 40 << 20);
  EXPECT_GE(released.process_resident_bytes_before() - released.process_resident_bytes_after(),
            reported * 95 / 100);
  for (const auto& rank : released.ranks()) {
    int64_t rank_reported = 0;
    for (const auto& t : rank.tags()) rank_reported += t.bytes();
    EXPECT_GT(rank_reported, 15 << 20) << "rank " << rank.rank();
    EXPECT_GE(rank.process_resident_bytes_before() - rank.process_resident_bytes_after(),
              rank_reported * 95 / 100)
        << "rank " << rank.rank();
  }
  ASSERT_EQ(evidence.after.ranks_size(), 2);
  for (const auto& rank : evidence.after.ranks()) {
    for (const auto& t : rank.memory().tags()) {
      EXPECT_EQ(t.resident_bytes(), 0) << "rank " << rank.rank() << " tag " << t.tag();
    }
  }
  // What the controller checks after PrepareTraining, on real figures.
  EXPECT_OK(controller::VerifyRelease(evidence, 0.95));

  GenerateResult refused = [&] {
    colo::v1::GenerateRequest fast = GreedyRequest(prompt, 4);
    fast.set_fail_if_unavailable(true);
    return engine_->Generate(fast);
  }();
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);

  ASSERT_OK_AND_ASSIGN(auto resumed, engine_->Resume({}));
  ASSERT_EQ(resumed.ranks_size(), 2);
  ASSERT_OK_AND_ASSIGN(auto memory_resumed, engine_->Memory());
  EXPECT_OK(controller::VerifyResumed(engine_->address(), {"weights", "kv_cache"},
                                      memory_resumed.memory()));
  ASSERT_OK_AND_ASSIGN(auto info, engine_->Info());
  EXPECT_EQ(info.state(), "needs_weights");
  EXPECT_THAT(engine_->Continue(), StatusIs(absl::StatusCode::kFailedPrecondition));
  // Every rank loads its shard from disk; the engine serves the same tokens.
  ASSERT_OK(engine_->UpdateFromDisk(*model_dir_, "v2").status());
  ASSERT_OK(engine_->Continue().status());
  GenerateResult after = engine_->Greedy(prompt, 16);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_EQ(after.logprobs, before.logprobs);
  EXPECT_EQ(after.weight_version, "v2");
}

}  // namespace
}  // namespace colo::test_util
