// Generate over gRPC against a real colo-engine: greedy outputs equal the
// offline oracle alone and under concurrency, prefix reuse, stop tokens,
// abort, metrics, and every bad input answered with the right status while
// the engine keeps serving.
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/engine/engine_fixture.h"
#include "tests/util/http_get.h"
#include "tests/util/status_matchers.h"

namespace colo::test_util {
namespace {

using ::testing::HasSubstr;

constexpr int kVocab = 256;

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::TinyModelOptions m;
    m.layers = 2;
    m.hidden = 64;
    m.vocab = kVocab;
    m.max_position = 512;
    m.seed = 7;
    auto dir = MakeTinyModel("generate_llama", m);
    ASSERT_TRUE(dir.ok()) << dir.status();
    model_dir_ = new std::string(*dir);
    metrics_file_ = new std::string(absl::StrCat(MakeTempDir("metrics"), "/port"));
    auto e = TestEngine::Start(*model_dir_, {"--kv_cache_bytes=4000000", "--page_size=4",
                                             absl::StrCat("--metrics_port_file=", *metrics_file_)});
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = e->release();
  }
  static void TearDownTestSuite() {
    if (engine_ != nullptr) {
      auto code = engine_->process().Terminate();
      EXPECT_TRUE(code.ok() && *code == 0) << (code.ok() ? absl::StrCat(*code) : code.status().ToString());
      delete engine_;
    }
  }
  static std::string* model_dir_;
  static std::string* metrics_file_;
  static TestEngine* engine_;
};
std::string* GenerateTest::model_dir_ = nullptr;
std::string* GenerateTest::metrics_file_ = nullptr;
TestEngine* GenerateTest::engine_ = nullptr;

TEST_F(GenerateTest, GreedyMatchesOfflineOracle) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 6; ++i) prompts.push_back(Prompt(i, 3 + 7 * i, kVocab));
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, prompts, 24));
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateResult r = engine_->Greedy(prompts[i], 24);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens, expected[i]) << "prompt " << i;
    EXPECT_EQ(r.logprobs.size(), r.tokens.size());
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.prompt_tokens, static_cast<int>(prompts[i].size()));
    EXPECT_EQ(r.weight_version, "0");
    for (float lp : r.logprobs) EXPECT_LE(lp, 0.0f);
  }
}

TEST_F(GenerateTest, ConcurrentRequestsBatchAndMatchOracle) {
  constexpr int kClients = 24;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kClients; ++i) prompts.push_back(Prompt(100 + i, 5 + (i * 13) % 40, kVocab));
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, prompts, 32));
  std::vector<GenerateResult> results(kClients);
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] { results[i] = engine_->Greedy(prompts[i], 32); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << results[i].status.error_message();
    EXPECT_EQ(results[i].tokens, expected[i]) << "client " << i;
  }
}

TEST_F(GenerateTest, RepeatedPromptReusesCachedPrefix) {
  const std::vector<int32_t> prompt = Prompt(555, 40, kVocab);
  GenerateResult first = engine_->Greedy(prompt, 8);
  GenerateResult second = engine_->Greedy(prompt, 8);
  ASSERT_TRUE(second.status.ok());
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_GE(second.cached_tokens, 36);  // page-aligned prefix of 39 tokens
}

TEST_F(GenerateTest, StopTokenEndsWithStop) {
  const std::vector<int32_t> prompt = Prompt(9, 12, kVocab);
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, {prompt}, 16));
  colo::v1::GenerateRequest request = GreedyRequest(prompt, 16);
  const int32_t stop = expected[0][5];
  request.mutable_sampling_params()->add_stop_token_ids(stop);
  GenerateResult r = engine_->Generate(request);
  ASSERT_TRUE(r.status.ok());
  const size_t first = std::find(expected[0].begin(), expected[0].end(), stop) - expected[0].begin();
  EXPECT_EQ(r.tokens, std::vector<int32_t>(expected[0].begin(), expected[0].begin() + first + 1));
  EXPECT_EQ(r.finish_reason, "stop");
}

TEST_F(GenerateTest, SeededSamplingIsReproducible) {
  colo::v1::GenerateRequest request = GreedyRequest(Prompt(3, 10, kVocab), 20);
  request.mutable_sampling_params()->set_temperature(1.0f);
  request.mutable_sampling_params()->set_top_p(0.9f);
  request.mutable_sampling_params()->set_seed(1234);
  GenerateResult a = engine_->Generate(request);
  GenerateResult b = engine_->Generate(request);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.tokens.size(), 20u);
}

TEST_F(GenerateTest, UnseededSamplesOfOnePromptDiffer) {
  // GRPO-style: N samples of one prompt without seeds must not repeat one
  // sample N times.
  colo::v1::GenerateRequest request = GreedyRequest(Prompt(31, 10, kVocab), 40);
  request.mutable_sampling_params()->set_temperature(1.0f);
  std::set<std::vector<int32_t>> distinct;
  for (int i = 0; i < 8; ++i) {
    GenerateResult r = engine_->Generate(request);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    distinct.insert(r.tokens);
  }
  EXPECT_GT(distinct.size(), 1u);
}

TEST_F(GenerateTest, AbortByRidEndsTheStream) {
  colo::v1::GenerateRequest request = GreedyRequest(Prompt(4, 8, kVocab), 400);
  request.set_rid("abort-me");
  GenerateStream stream(engine_->stub(), request);
  ASSERT_TRUE(stream.ReadUntil(1));
  grpc::ClientContext context;
  colo::v1::AbortRequest abort;
  abort.set_rid("abort-me");
  colo::v1::AbortResponse response;
  ASSERT_TRUE(engine_->stub().Abort(&context, abort, &response).ok());
  GenerateResult r = stream.Finish();
  ASSERT_TRUE(r.status.ok());
  if (response.found()) {
    EXPECT_EQ(r.finish_reason, "abort");
    EXPECT_LT(r.tokens.size(), 400u);
  } else {
    EXPECT_EQ(r.finish_reason, "length");  // finished before the abort arrived
  }
}

TEST_F(GenerateTest, BadInputGetsTheRightCodeAndEngineKeepsServing) {
  struct Case {
    std::string name;
    colo::v1::GenerateRequest request;
    grpc::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({"empty input", GreedyRequest({}, 4), grpc::StatusCode::INVALID_ARGUMENT,
                   "input_ids is empty"});
  cases.push_back({"token >= vocab", GreedyRequest({1, kVocab}, 4),
                   grpc::StatusCode::INVALID_ARGUMENT, "outside the vocabulary"});
  cases.push_back({"beyond context", GreedyRequest({1, 2}, 100000),
                   grpc::StatusCode::INVALID_ARGUMENT, "exceeds"});
  colo::v1::GenerateRequest unknown_session = GreedyRequest({1, 2}, 4);
  unknown_session.set_session_id("nope");
  cases.push_back({"unknown session", unknown_session, grpc::StatusCode::NOT_FOUND,
                   "unknown session 'nope'"});
  colo::v1::GenerateRequest bad_top_p = GreedyRequest({1, 2}, 4);
  bad_top_p.mutable_sampling_params()->set_top_p(2.0f);
  cases.push_back({"top_p 2", bad_top_p, grpc::StatusCode::INVALID_ARGUMENT, "top_p"});
  for (const Case& c : cases) {
    GenerateResult r = engine_->Generate(c.request);
    EXPECT_EQ(r.status.error_code(), c.code) << c.name << ": " << r.status.error_message();
    EXPECT_THAT(r.status.error_message(), HasSubstr(c.message)) << c.name;
  }
  {
    grpc::ClientContext context;
    colo::v1::ReleaseTagsRequest request;
    request.add_tags("weightz");
    colo::v1::ReleaseTagsResponse response;
    grpc::Status s = engine_->stub().ReleaseTags(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("weightz"));
  }
  EXPECT_THAT(engine_->Pause("foo"), StatusIs(absl::StatusCode::kInvalidArgument));
  {
    grpc::ClientContext context;
    colo::v1::CloseSessionRequest request;
    request.set_session_id("never-opened");
    colo::v1::CloseSessionResponse response;
    EXPECT_EQ(engine_->stub().CloseSession(&context, request, &response).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  // Release while generating: FAILED_PRECONDITION naming the running count.
  colo::v1::GenerateRequest long_request = GreedyRequest(Prompt(77, 6, kVocab), 450);
  long_request.set_rid("long");
  GenerateStream stream(engine_->stub(), long_request);
  ASSERT_TRUE(stream.ReadUntil(2));
  absl::StatusOr<colo::v1::ReleaseTagsResponse> release = engine_->Release({"kv_cache"});
  absl::StatusOr<colo::v1::GetServerInfoResponse> info = engine_->Info();
  if (!stream.ReadUntil(450)) {
    // Still running when released: refused.
  }
  GenerateResult long_result = stream.Finish();
  if (long_result.tokens.size() < 450u || !release.ok()) {
    EXPECT_THAT(release, StatusIs(absl::StatusCode::kFailedPrecondition));
    EXPECT_THAT(release.status().message(), HasSubstr("request(s) are running"));
  }
  ASSERT_TRUE(long_result.status.ok());
  EXPECT_EQ(long_result.tokens.size(), 450u);
  // Still serving.
  GenerateResult ok = engine_->Greedy({1, 2, 3}, 4);
  EXPECT_TRUE(ok.status.ok());
  EXPECT_EQ(ok.tokens.size(), 4u);
}

TEST_F(GenerateTest, BlasGemmsAgreeWithTheOracleWithinTolerance) {
  // --batch_invariant=false: multi-row GEMMs through OpenBLAS; results equal
  // the batch-invariant oracle within float rounding (DESIGN: "within float
  // tolerance"), so short greedy continuations agree here.
  ASSERT_OK_AND_ASSIGN(auto blas, TestEngine::Start(*model_dir_, {"--kv_cache_bytes=4000000",
                                                                 "--batch_invariant=false"}));
  const std::vector<int32_t> prompt = Prompt(12, 40, kVocab);
  ASSERT_OK_AND_ASSIGN(auto expected, OfflineGreedy(*model_dir_, {prompt}, 8));
  GenerateResult r = blas->Greedy(prompt, 8);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens, expected[0]);
  GenerateResult exact = engine_->Greedy(prompt, 8);
  ASSERT_EQ(r.logprobs.size(), exact.logprobs.size());
  for (size_t i = 0; i < r.logprobs.size(); ++i) EXPECT_NEAR(r.logprobs[i], exact.logprobs[i], 1e-3);
  EXPECT_EQ(blas->process().Terminate().value_or(-1), 0);
}

TEST_F(GenerateTest, MetricsEndpointExportsCountersAndAuditIsClean) {
  GenerateResult r = engine_->Greedy({5, 6, 7}, 5);
  ASSERT_TRUE(r.status.ok());
  std::ifstream in(*metrics_file_);
  int port = 0;
  in >> port;
  ASSERT_GT(port, 0);
  ASSERT_OK_AND_ASSIGN(std::string body, HttpGetBody(port, "/metrics"));
  EXPECT_THAT(body, HasSubstr("colo_engine_generated_tokens_total "));
  EXPECT_THAT(body, HasSubstr("colo_engine_kv_pool_pages{pool=\"full\",kind=\"capacity\"}"));
  EXPECT_THAT(body, HasSubstr("colo_engine_tag_resident_bytes{tag=\"weights\"}"));
  EXPECT_THAT(body, HasSubstr("colo_engine_paused{mode=\"in_place\"} 0"));
  EXPECT_THAT(body, HasSubstr("colo_engine_kv_audit_violations_total 0"));
  ASSERT_OK_AND_ASSIGN(auto info, engine_->Info());
  EXPECT_EQ(info.kv_audit_violations(), 0) << info.last_kv_audit_error();
}

}  // namespace
}  // namespace colo::test_util
