// Streaming sessions on a model with sliding-window layers and page_size 4
// (the configuration that crashed a real engine): a 5-turn session gives the
// same tokens as sending the full history each turn, reuses its KV between
// turns, and closing frees it.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

constexpr int kVocab = 300;

absl::StatusOr<std::string> SwaModel() {
  engine::TinyModelOptions m;
  m.layers = 3;
  m.hidden = 64;
  m.vocab = kVocab;
  m.max_position = 1024;
  m.layer_types = {engine::LayerType::kSlidingAttention, engine::LayerType::kFullAttention,
                   engine::LayerType::kSlidingAttention};
  m.sliding_window = 6;
  m.seed = 5;
  return MakeTinyModel("session_swa", m);
}

absl::StatusOr<std::string> OpenSession(TestEngine& engine, int capacity) {
  grpc::ClientContext context;
  colo::v1::OpenSessionRequest request;
  request.set_capacity_tokens(capacity);
  colo::v1::OpenSessionResponse response;
  grpc::Status s = engine.stub().OpenSession(&context, request, &response);
  if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  return response.session_id();
}

TEST(SessionTest, FiveTurnsOnSwaModelWithPageSize4EqualFullHistory) {
  ASSERT_OK_AND_ASSIGN(std::string dir, SwaModel());
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir, {"--kv_cache_bytes=4000000",
                                                           "--page_size=4"}));
  ASSERT_OK_AND_ASSIGN(std::string session, OpenSession(*engine, 600));
  std::vector<int32_t> history;
  for (int turn = 0; turn < 5; ++turn) {
    const std::vector<int32_t> input = Prompt(40 + turn, 3 + 2 * turn, kVocab);  // odd lengths
    std::vector<int32_t> full = history;
    full.insert(full.end(), input.begin(), input.end());
    ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(dir, {full}, 9));
    GenerateResult r = engine->Greedy(input, 9, session);
    ASSERT_TRUE(r.status.ok()) << "turn " << turn << ": " << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[0]) << "turn " << turn;
    EXPECT_EQ(r.prompt_tokens, static_cast<int>(full.size()));
    if (turn > 0) {
      // The previous turns' KV is kept (all but the last sampled token).
      EXPECT_GE(r.cached_tokens, static_cast<int>(history.size()) - 1) << "turn " << turn;
    }
    history = full;
    history.insert(history.end(), r.tokens.begin(), r.tokens.end());
    // The same full history without the session gives the same tokens.
    GenerateResult plain = engine->Greedy(full, 9);
    EXPECT_EQ(plain.tokens, expected[0]) << "turn " << turn;
  }
  ASSERT_OK_AND_ASSIGN(auto info, engine->Info());
  EXPECT_EQ(info.num_sessions(), 1);
  EXPECT_EQ(info.kv_audit_violations(), 0) << info.last_kv_audit_error();
  grpc::ClientContext context;
  colo::v1::CloseSessionRequest close;
  close.set_session_id(session);
  colo::v1::CloseSessionResponse closed;
  ASSERT_TRUE(engine->stub().CloseSession(&context, close, &closed).ok());
  EXPECT_GE(closed.freed_tokens(), static_cast<int64_t>(history.size()) - 1);
  GenerateResult after_close = engine->Greedy({1, 2}, 2, session);
  EXPECT_EQ(after_close.status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(SessionTest, CapacityPauseAndReleaseKeepSessionsCorrect) {
  ASSERT_OK_AND_ASSIGN(std::string dir, SwaModel());
  ASSERT_OK_AND_ASSIGN(auto engine, TestEngine::Start(dir, {"--kv_cache_bytes=4000000",
                                                           "--page_size=4"}));
  ASSERT_OK_AND_ASSIGN(std::string session, OpenSession(*engine, 40));
  const std::vector<int32_t> first = Prompt(1, 10, kVocab);
  GenerateResult r1 = engine->Greedy(first, 8, session);
  ASSERT_TRUE(r1.status.ok());
  // Beyond the session's capacity: INVALID_ARGUMENT, the session survives.
  GenerateResult too_long = engine->Greedy(Prompt(2, 20, kVocab), 10, session);
  EXPECT_EQ(too_long.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Releasing kv_cache drops the session's KV; the next turn recomputes its
  // history and still gives the full-history tokens.
  ASSERT_OK(engine->Pause("retract").status());
  ASSERT_OK(engine->Release({"kv_cache"}).status());
  ASSERT_OK(engine->Resume({"kv_cache"}).status());
  ASSERT_OK(engine->Continue().status());
  std::vector<int32_t> full = first;
  full.insert(full.end(), r1.tokens.begin(), r1.tokens.end());
  const std::vector<int32_t> input = {7, 8, 9};
  full.insert(full.end(), input.begin(), input.end());
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(dir, {full}, 6));
  GenerateResult r2 = engine->Greedy(input, 6, session);
  ASSERT_TRUE(r2.status.ok()) << r2.status.error_message();
  EXPECT_EQ(r2.tokens, expected[0]);
}

}  // namespace
}  // namespace colo::test_util
