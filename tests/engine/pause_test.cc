// PauseGeneration / ContinueGeneration over gRPC: pausing mid-generation from
// another client with `retract` or `in_place` and continuing yields exactly the
// greedy tokens of an unpaused run; `abort` returns partial outputs with
// finish_reason "abort" and later requests work; requests that must not wait
// are refused with UNAVAILABLE while paused.
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

constexpr int kVocab = 512;
constexpr int kMaxNew = 600;

class PauseTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    engine::TinyModelOptions m;
    m.layers = 3;
    m.hidden = 96;
    m.heads = 6;
    m.kv_heads = 2;
    m.vocab = kVocab;
    m.max_position = 1024;
    m.seed = 11;
    auto dir = MakeTinyModel("pause_llama", m);
    ASSERT_TRUE(dir.ok()) << dir.status();
    model_dir_ = new std::string(*dir);
    auto e = TestEngine::Start(*model_dir_, {"--kv_cache_bytes=16000000", "--page_size=8"});
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
std::string* PauseTest::model_dir_ = nullptr;
TestEngine* PauseTest::engine_ = nullptr;

// Pauses while a long request (plus two shorter ones) is generating and
// continues; every output must equal the unpaused oracle.
TEST_P(PauseTest, PauseMidGenerationThenContinueGivesUnpausedTokens) {
  const std::string mode = GetParam();
  std::vector<std::vector<int32_t>> prompts = {Prompt(1, 20, kVocab), Prompt(2, 9, kVocab),
                                               Prompt(3, 33, kVocab)};
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, prompts, kMaxNew));
  bool caught = false;
  for (int attempt = 0; attempt < 5 && !caught; ++attempt) {
    std::vector<std::unique_ptr<GenerateStream>> streams;
    for (const auto& p : prompts) {
      streams.push_back(std::make_unique<GenerateStream>(engine_->stub(), GreedyRequest(p, kMaxNew)));
    }
    ASSERT_TRUE(streams[0]->ReadUntil(5));
    ASSERT_OK_AND_ASSIGN(auto paused, engine_->Pause(mode));
    const int held = mode == "retract" ? paused.num_retracted() : paused.num_kept();
    caught = held > 0;
    ASSERT_OK_AND_ASSIGN(auto info, engine_->Info());
    EXPECT_EQ(info.state(), "paused");
    EXPECT_EQ(info.paused_mode(), mode);
    if (mode == "retract") {
      EXPECT_EQ(info.num_running(), 0);
    } else {
      EXPECT_EQ(info.num_running(), held);
    }
    // While paused no step runs: the running requests' token counts stay put.
    ASSERT_OK_AND_ASSIGN(auto info2, engine_->Info());
    EXPECT_EQ(info2.num_running(), info.num_running());
    ASSERT_OK_AND_ASSIGN(auto cont, engine_->Continue(true));
    EXPECT_LE(cont.reserved_bytes_after(), cont.reserved_bytes_before());
    for (size_t i = 0; i < streams.size(); ++i) {
      GenerateResult r = streams[i]->Finish();
      ASSERT_TRUE(r.status.ok()) << r.status.error_message();
      EXPECT_EQ(r.finish_reason, "length");
      EXPECT_EQ(r.tokens, expected[i]) << "request " << i << " after pause(" << mode << ")";
    }
  }
  EXPECT_TRUE(caught) << "the pause never caught a request in flight";
}

INSTANTIATE_TEST_SUITE_P(Modes, PauseTest, ::testing::Values("retract", "in_place"));

TEST_F(PauseTest, AbortReturnsPartialOutputsAndLaterRequestsWork) {
  const std::vector<int32_t> prompt = Prompt(5, 15, kVocab);
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, {prompt}, kMaxNew));
  GenerateStream stream(engine_->stub(), GreedyRequest(prompt, kMaxNew));
  ASSERT_TRUE(stream.ReadUntil(3));
  ASSERT_OK_AND_ASSIGN(auto paused, engine_->Pause("abort"));
  GenerateResult r = stream.Finish();
  ASSERT_TRUE(r.status.ok());
  if (paused.num_aborted() > 0) {
    EXPECT_EQ(r.finish_reason, "abort");
    ASSERT_LT(r.tokens.size(), expected[0].size());
  }
  // Partial outputs are the unpaused run's prefix.
  EXPECT_EQ(r.tokens, std::vector<int32_t>(expected[0].begin(), expected[0].begin() + r.tokens.size()));
  ASSERT_OK(engine_->Continue().status());
  GenerateResult again = engine_->Greedy(prompt, kMaxNew);
  ASSERT_TRUE(again.status.ok());
  EXPECT_EQ(again.tokens, expected[0]);
}

TEST_F(PauseTest, RequestsWhilePausedWaitOrFailFast) {
  // Readiness ("colo.generate") follows the engine's ability to generate;
  // liveness ("") stays SERVING.
  EXPECT_THAT(CheckHealth(engine_->address(), "colo.generate"), IsOkAndHolds("SERVING"));
  ASSERT_OK(engine_->Pause("in_place").status());
  EXPECT_THAT(CheckHealth(engine_->address(), "colo.generate"), IsOkAndHolds("NOT_SERVING"));
  EXPECT_THAT(CheckHealth(engine_->address(), ""), IsOkAndHolds("SERVING"));
  colo::v1::GenerateRequest fast = GreedyRequest({1, 2, 3}, 4);
  fast.set_fail_if_unavailable(true);
  GenerateResult refused = engine_->Generate(fast);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("paused"));
  // A waiting request is queued and completes after Continue.
  GenerateResult queued;
  std::thread client([&] { queued = engine_->Greedy({1, 2, 3}, 4); });
  ASSERT_OK(engine_->Continue().status());
  client.join();
  EXPECT_THAT(CheckHealth(engine_->address(), "colo.generate"), IsOkAndHolds("SERVING"));
  ASSERT_TRUE(queued.status.ok());
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, {{1, 2, 3}}, 4));
  EXPECT_EQ(queued.tokens, expected[0]);
}

}  // namespace
}  // namespace colo::test_util
