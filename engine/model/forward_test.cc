#include "engine/model/forward.h"

#include <cmath>

#include "engine/model/offline_generator.h"
#include "engine/model/reference_forward.h"
#include "engine/model/simple_kv_cache.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/sampling.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<TransformerModel> LoadTiny(ModelTestEnv& env, const TinyModelOptions& o,
                                           const std::string& name,
                                           kernels::ThreadPool* threads = nullptr) {
  const std::string d = TestDir(name);
  EXPECT_OK(WriteTinyModel(o, d));
  TransformerModel::Options mo;
  mo.model_dir = d;
  mo.weights_pool = env.pool.get();
  mo.allocator = env.allocator.get();
  mo.threads = threads;
  return std::move(TransformerModel::Load(mo)).value();
}

// Logits of the colo forward equal a double-precision dense reference.
void CheckAgainstReference(const TinyModelOptions& o, const std::string& name,
                           bool batch_invariant = true) {
  ModelTestEnv env;
  auto model = LoadTiny(env, o, name);
  model->set_batch_invariant(batch_invariant);
  std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
  auto ref = ReferenceForward(model->weights(), tokens);
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(model->config(), 64, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto slots, kv->AddSequence(tokens.size()));
  // Prefill 7 tokens, then extend by 3, then decode 2 one at a time.
  int64_t cached = 0;
  for (int64_t n : {7, 3, 1, 1}) {
    ForwardRequest r;
    r.cached_len = cached;
    r.new_tokens = absl::MakeConstSpan(tokens.data() + cached, n);
    r.slots = slots;
    ForwardOptions fo;
    fo.return_logits = true;
    std::vector<ForwardRequest> batch = {r};
    ASSERT_OK_AND_ASSIGN(ForwardResult res, model->Forward(batch, kv->view(), fo));
    cached += n;
    const auto& want = ref[cached - 1];
    for (size_t v = 0; v < want.size(); ++v) {
      ASSERT_NEAR(res.logits[v], want[v], 2e-3 * (1 + std::abs(want[v])))
          << name << " position " << cached - 1 << " vocab " << v;
    }
  }
}

TEST(ForwardTest, MatchesDenseReferenceLlama) {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 2;
  CheckAgainstReference(o, "fwd_llama");
  CheckAgainstReference(o, "fwd_llama_blas", /*batch_invariant=*/false);
}

TEST(ForwardTest, MatchesDenseReferenceQwen3QkNorm) {
  TinyModelOptions o;
  o.arch = "qwen3";
  o.head_dim = 24;
  o.tie_embeddings = true;
  CheckAgainstReference(o, "fwd_qwen3");
}

TEST(ForwardTest, MatchesDenseReferenceQwen2Bias) {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.kv_heads = 1;
  CheckAgainstReference(o, "fwd_qwen2");
}

TinyModelOptions Qwen3Moe() {
  TinyModelOptions o;
  o.arch = "qwen3_moe";
  o.layers = 3;
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.experts = 8;
  o.experts_per_token = 3;
  o.moe_intermediate = 24;
  o.intermediate = 40;
  o.mlp_only_layers = {1};  // one dense layer between two MoE layers
  o.seed = 31;
  return o;
}

TinyModelOptions GptOss() {
  TinyModelOptions o;
  o.arch = "gpt_oss";
  o.layers = 4;
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.experts = 6;
  o.experts_per_token = 2;
  o.moe_intermediate = 32;
  o.sliding_window = 5;  // alternating sliding / full layers
  o.seed = 32;
  return o;
}

TEST(ForwardTest, MatchesDenseReferenceQwen3Moe) {
  TinyModelOptions o = Qwen3Moe();
  CheckAgainstReference(o, "fwd_qwen3_moe");
  o.norm_topk_prob = false;
  o.decoder_sparse_step = 2;
  o.mlp_only_layers.clear();
  CheckAgainstReference(o, "fwd_qwen3_moe_step2");
}

// Sinks, q/k/v/o bias, YaRN, sliding and full layers, the clamped SwiGLU
// and both expert storages (bf16 and MXFP4, dequantized on load).
TEST(ForwardTest, MatchesDenseReferenceGptOss) {
  TinyModelOptions o = GptOss();
  CheckAgainstReference(o, "fwd_gpt_oss");
  o.dtype = TensorDtype::kBF16;
  CheckAgainstReference(o, "fwd_gpt_oss_bf16");
  o.dtype = TensorDtype::kF32;
  o.mxfp4 = true;
  CheckAgainstReference(o, "fwd_gpt_oss_mxfp4");
}

// The expert kernels split differently with 1 and 3 threads (over experts or
// over columns); the logits must not change.
TEST(ForwardTest, MoeIsThreadCountInvariant) {
  for (const TinyModelOptions& o : {Qwen3Moe(), GptOss()}) {
    ModelTestEnv env;
    std::vector<std::vector<float>> logits;
    for (int threads : {1, 3}) {
      kernels::ThreadPool pool(threads);
      auto model = LoadTiny(env, o, "fwd_moe_threads_" + o.arch, &pool);
      ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(model->config(), 64, env.pool.get()));
      std::vector<int32_t> tokens;
      for (int i = 0; i < 20; ++i) tokens.push_back((i * 37 + 11) % 256);
      ASSERT_OK_AND_ASSIGN(auto slots, kv->AddSequence(tokens.size()));
      ForwardRequest r;
      r.new_tokens = tokens;
      r.slots = slots;
      ForwardOptions fo;
      fo.return_logits = true;
      std::vector<ForwardRequest> batch = {r};
      ASSERT_OK_AND_ASSIGN(ForwardResult res, model->Forward(batch, kv->view(), fo));
      logits.push_back(res.logits);
    }
    EXPECT_EQ(logits[0], logits[1]) << o.arch;
  }
}

// A request decodes to identical tokens and logprobs alone and inside a batch
// of 32 mixed-length requests (prefill mixed with decode, chunked prefill).
void CheckBatchInvariance(const TinyModelOptions& o, const std::string& name) {
  ModelTestEnv env;
  auto model = LoadTiny(env, o, name);
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 32; ++i) {
    GenerationRequest r;
    for (int t = 0; t < 1 + (i * 7) % 23; ++t) r.prompt.push_back((i * 31 + t * 17) % 256);
    r.max_new_tokens = 6 + i % 5;
    if (i % 3 == 1) {  // some sampled requests: also batch invariant
      r.sampling.temperature = 0.8f;
      r.sampling.top_k = 20;
      r.sampling.top_p = 0.9f;
      r.sampling.seed = 1000 + i;
    }
    requests.push_back(r);
  }
  OfflineGenerateOptions one;
  ASSERT_OK_AND_ASSIGN(auto alone, GenerateOffline(*model, requests, one, env.pool.get()));
  OfflineGenerateOptions many;
  many.batch_size = 32;
  many.prefill_chunk = 5;
  ASSERT_OK_AND_ASSIGN(auto batched, GenerateOffline(*model, requests, many, env.pool.get()));
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(alone[i].tokens, batched[i].tokens) << name << " request " << i;
    EXPECT_EQ(alone[i].logprobs, batched[i].logprobs) << name << " request " << i;
  }
}

TEST(ForwardTest, GreedyResultsAreBatchInvariant) {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 2;
  o.hidden = 96;
  o.heads = 6;
  o.kv_heads = 2;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention};
  o.sliding_window = 6;
  CheckBatchInvariance(o, "fwd_batch");
}

// MoE: a token's experts, weights and combine order depend on its row only.
TEST(ForwardTest, MoeResultsAreBatchInvariant) {
  CheckBatchInvariance(Qwen3Moe(), "fwd_batch_qwen3_moe");
  CheckBatchInvariance(GptOss(), "fwd_batch_gpt_oss");
}

TEST(ForwardTest, WeightOverwriteChangesOutputAndBadBatchesAreRejected) {
  ModelTestEnv env;
  auto model = LoadTiny(env, TinyModelOptions(), "fwd_errors");
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(model->config(), 64, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto slots, kv->AddSequence(8));
  std::vector<int32_t> tokens = {1, 2, 3};
  ForwardRequest r;
  r.new_tokens = tokens;
  r.slots = slots;
  ForwardOptions fo;
  fo.return_logits = true;
  std::vector<ForwardRequest> batch = {r};
  ASSERT_OK_AND_ASSIGN(ForwardResult a, model->Forward(batch, kv->view(), fo));
  ASSERT_OK_AND_ASSIGN(WeightInfo norm, model->weights().Find("model.norm.weight"));
  std::vector<float> twos(norm.NumElements(), 2.0f);
  ASSERT_OK(model->weights().Overwrite(norm.name, TensorDtype::kF32, norm.shape,
                                       twos.data(), twos.size() * 4));
  ASSERT_OK_AND_ASSIGN(ForwardResult b, model->Forward(batch, kv->view(), fo));
  EXPECT_NE(a.logits, b.logits);

  std::vector<int32_t> bad_tokens = {1, 100000};
  batch[0].new_tokens = bad_tokens;
  EXPECT_THAT(model->Forward(batch, kv->view()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("100000")));
  batch[0].new_tokens = tokens;
  batch[0].slots = absl::MakeConstSpan(slots.data(), 2);
  EXPECT_THAT(model->Forward(batch, kv->view()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slots")));
  std::vector<int32_t> far = {1, 2, 1 << 20};
  batch[0].slots = far;
  EXPECT_THAT(model->Forward(batch, kv->view()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(model->Forward({}, kv->view()), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace engine
}  // namespace colo
