#include "engine/model/model_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

constexpr char kLlama[] = R"({"model_type": "llama", "vocab_size": 100,
  "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
  "rope_theta": 500000.0, "hidden_act": "silu", "tie_word_embeddings": true,
  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})";

TEST(ModelConfigTest, ParsesLlamaWithLlama3Rope) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kLlama));
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rope_scaling.type, kernels::RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 8.0);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.HasSlidingLayers());
}

TEST(ModelConfigTest, Qwen2HasQkvBiasQwen3HasQkNorm) {
  ASSERT_OK_AND_ASSIGN(ModelConfig q2, ParseModelConfig(R"({"model_type": "qwen2",
    "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
    "num_hidden_layers": 4, "num_attention_heads": 2, "use_sliding_window": true,
    "sliding_window": 5, "max_window_layers": 2})"));
  EXPECT_TRUE(q2.qkv_bias);
  EXPECT_FALSE(q2.o_bias);
  EXPECT_EQ(q2.layer_types[1], LayerType::kFullAttention);
  EXPECT_EQ(q2.layer_types[2], LayerType::kSlidingAttention);
  EXPECT_EQ(q2.sliding_window, 5);
  ASSERT_OK_AND_ASSIGN(ModelConfig q3, ParseModelConfig(R"({"model_type": "qwen3",
    "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8, "head_dim": 6,
    "num_hidden_layers": 2, "num_attention_heads": 2,
    "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 3})"));
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 6);
  EXPECT_EQ(q3.layer_types[0], LayerType::kSlidingAttention);
}

TEST(ModelConfigTest, RejectsUnsupportedAndMalformedInputNamingTheField) {
  EXPECT_THAT(ParseModelConfig("{not json"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelConfig("[1,2]"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseModelConfig(R"({"model_type": "gpt2"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpt2")));
  const std::string base = R"("model_type": "llama", "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2)";
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "hidden_act": "gelu"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden_act")));
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "rope_scaling": {"rope_type": "longrope", "factor": 2}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longrope")));
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "num_key_value_heads": 3})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_key_value_heads")));
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "mlp_bias": true})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mlp_bias")));
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "layer_types": ["full_attention", "chunked"]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("chunked")));
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "layer_types": ["sliding_attention", "full_attention"]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("sliding_window")));
  EXPECT_THAT(ParseModelConfig(R"({"model_type": "llama", "vocab_size": "10"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocab_size")));
  EXPECT_THAT(ParseModelConfig(R"({"model_type": "llama", "vocab_size": 10})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden_size")));
}

TEST(ModelConfigTest, JsonRoundTrip) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kLlama));
  ASSERT_OK_AND_ASSIGN(ModelConfig d, ParseModelConfig(ModelConfigToJson(c)));
  EXPECT_EQ(d.hidden_size, c.hidden_size);
  EXPECT_EQ(d.rope_scaling.type, c.rope_scaling.type);
  EXPECT_EQ(d.NumParameters(), c.NumParameters());
}

// Qwen3-30B-A3B's config.json, shrunk (the fields as published).
constexpr char kQwen3Moe[] = R"({"architectures": ["Qwen3MoeForCausalLM"],
  "attention_bias": false, "decoder_sparse_step": 1, "head_dim": 16,
  "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 96,
  "max_position_embeddings": 40960, "max_window_layers": 48, "mlp_only_layers": [],
  "model_type": "qwen3_moe", "moe_intermediate_size": 32, "norm_topk_prob": true,
  "num_attention_heads": 4, "num_experts": 8, "num_experts_per_tok": 2,
  "num_hidden_layers": 3, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
  "rope_scaling": null, "rope_theta": 1000000.0, "sliding_window": null,
  "tie_word_embeddings": false, "use_sliding_window": false, "vocab_size": 300})";

TEST(ModelConfigTest, ParsesQwen3Moe) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kQwen3Moe));
  EXPECT_TRUE(c.IsMoe());
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.experts_per_token, 2);
  EXPECT_EQ(c.moe.intermediate_size, 32);
  EXPECT_TRUE(c.moe.norm_topk_prob);
  EXPECT_EQ(c.moe.router, MoeRouter::kSoftmaxTopK);
  EXPECT_EQ(c.moe.layout, ExpertLayout::kPerExpertLinear);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_sinks);
  EXPECT_FALSE(c.HasSlidingLayers());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c.IsMoeLayer(i)) << i;
  EXPECT_DOUBLE_EQ(c.rope_theta, 1000000.0);
  // 3 layers: attention 64*64 + 2*64*32 + 64*64 + 2*64 (norms) + 2*16 (q/k norm);
  // MLP 8 experts * 3*64*32 + router 8*64; embeddings 300*64 twice, final norm 64.
  const int64_t attention = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 2 * 64 + 2 * 16;
  EXPECT_EQ(c.NumParameters(), 3 * (attention + 8 * 3 * 64 * 32 + 8 * 64) + 2 * 300 * 64 + 64);
  EXPECT_EQ(c.NumActiveParameters(),
            3 * (attention + 2 * 3 * 64 * 32 + 8 * 64) + 2 * 300 * 64 + 64);
}

TEST(ModelConfigTest, Qwen3MoeSparseStepMlpOnlyLayersAndSlidingWindow) {
  std::string json = kQwen3Moe;
  json.replace(json.find(R"("decoder_sparse_step": 1)"), 24, R"("decoder_sparse_step": 2)");
  json.replace(json.find(R"("mlp_only_layers": [])"), 21, R"("mlp_only_layers": [1])");
  json.replace(json.find(R"("use_sliding_window": false)"), 27, R"("use_sliding_window": true)");
  json.replace(json.find(R"("sliding_window": null)"), 22, R"("sliding_window": 7)");
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(json));
  // (i + 1) % 2 == 0 and not in mlp_only_layers: none of 0, 1, 2.
  EXPECT_FALSE(c.IsMoeLayer(0));
  EXPECT_FALSE(c.IsMoeLayer(1));
  EXPECT_FALSE(c.IsMoeLayer(2));
  // use_sliding_window: every layer slides (no max_window_layers in Qwen3MoeConfig).
  for (LayerType t : c.layer_types) EXPECT_EQ(t, LayerType::kSlidingAttention);
  EXPECT_EQ(c.sliding_window, 7);
  ASSERT_OK_AND_ASSIGN(ModelConfig d, ParseModelConfig(ModelConfigToJson(c)));
  EXPECT_EQ(d.moe_layers, c.moe_layers);
  EXPECT_EQ(d.layer_types, c.layer_types);
  EXPECT_EQ(d.mlp_only_layers, c.mlp_only_layers);
  EXPECT_EQ(d.NumParameters(), c.NumParameters());
}

// gpt-oss-20b's config.json, shrunk (the fields as published).
constexpr char kGptOss[] = R"({"architectures": ["GptOssForCausalLM"],
  "attention_bias": true, "attention_dropout": 0.0, "eos_token_id": 200002,
  "experts_per_token": 4, "head_dim": 16, "hidden_act": "silu", "hidden_size": 64,
  "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 32,
  "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
  "max_position_embeddings": 131072, "model_type": "gpt_oss", "num_attention_heads": 4,
  "num_experts_per_tok": 4, "num_hidden_layers": 4, "num_key_value_heads": 2,
  "num_local_experts": 8, "output_router_logits": false, "pad_token_id": 199999,
  "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn",
    "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"], "quant_method": "mxfp4"},
  "rms_norm_eps": 1e-05, "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0,
    "factor": 32.0, "original_max_position_embeddings": 4096, "rope_type": "yarn",
    "truncate": false}, "rope_theta": 150000, "router_aux_loss_coef": 0.9,
  "sliding_window": 128, "swiglu_limit": 7.0, "tie_word_embeddings": false,
  "transformers_version": "4.55.0.dev0", "use_cache": true, "vocab_size": 300})";

TEST(ModelConfigTest, ParsesGptOss) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(kGptOss));
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.experts_per_token, 4);
  EXPECT_EQ(c.moe.intermediate_size, 32);
  EXPECT_EQ(c.moe.router, MoeRouter::kTopKSoftmax);
  EXPECT_EQ(c.moe.layout, ExpertLayout::kFusedTransposed);
  EXPECT_DOUBLE_EQ(c.moe.swiglu_limit, 7.0);
  EXPECT_DOUBLE_EQ(c.moe.swiglu_alpha, 1.702);
  EXPECT_TRUE(c.moe.mxfp4);
  EXPECT_TRUE(c.attention_sinks);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_TRUE(c.o_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_EQ(c.layer_types[0], LayerType::kSlidingAttention);
  EXPECT_EQ(c.layer_types[1], LayerType::kFullAttention);
  EXPECT_EQ(c.rope_scaling.type, kernels::RopeScaling::Type::kYarn);
  EXPECT_DOUBLE_EQ(c.rope_scaling.factor, 32.0);
  EXPECT_FALSE(c.rope_scaling.truncate);
  EXPECT_DOUBLE_EQ(c.rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c.rope_theta, 150000.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  ASSERT_OK_AND_ASSIGN(ModelConfig d, ParseModelConfig(ModelConfigToJson(c)));
  EXPECT_EQ(d.layer_types, c.layer_types);
  EXPECT_EQ(d.rope_scaling.type, kernels::RopeScaling::Type::kYarn);
  EXPECT_FALSE(d.rope_scaling.truncate);
  EXPECT_TRUE(d.moe.mxfp4);
  EXPECT_EQ(d.NumParameters(), c.NumParameters());
}

TEST(ModelConfigTest, GptOssDefaultsAsTransformers) {
  // No layer_types, rope or sliding_window: alternating sliding/full, window
  // 128, YaRN factor 32, theta 150000, head_dim 64.
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ParseModelConfig(R"({"model_type": "gpt_oss",
    "vocab_size": 10, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 3,
    "num_attention_heads": 2, "num_key_value_heads": 1, "num_local_experts": 4})"));
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.layer_types[0], LayerType::kSlidingAttention);
  EXPECT_EQ(c.layer_types[1], LayerType::kFullAttention);
  EXPECT_EQ(c.layer_types[2], LayerType::kSlidingAttention);
  EXPECT_EQ(c.sliding_window, 128);
  EXPECT_EQ(c.moe.experts_per_token, 4);
  EXPECT_EQ(c.rope_scaling.type, kernels::RopeScaling::Type::kYarn);
  EXPECT_DOUBLE_EQ(c.rope_theta, 150000.0);
  EXPECT_FALSE(c.moe.mxfp4);
}

TEST(ModelConfigTest, RopeParametersOfTransformers5) {
  const std::string base = R"("model_type": "llama", "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
    "max_position_embeddings": 1000)";
  ASSERT_OK_AND_ASSIGN(ModelConfig a, ParseModelConfig("{" + base +
      R"(, "rope_parameters": {"rope_theta": 5000.0, "rope_type": "default"}})"));
  EXPECT_DOUBLE_EQ(a.rope_theta, 5000.0);
  EXPECT_EQ(a.rope_scaling.type, kernels::RopeScaling::Type::kNone);
  // rope_scaling wins over rope_parameters; yarn's factor defaults to
  // max_position_embeddings / original_max_position_embeddings.
  ASSERT_OK_AND_ASSIGN(ModelConfig b, ParseModelConfig("{" + base +
      R"(, "rope_theta": 7.0, "rope_parameters": {"rope_type": "linear", "factor": 3},
      "rope_scaling": {"rope_type": "yarn", "original_max_position_embeddings": 250}})"));
  EXPECT_DOUBLE_EQ(b.rope_theta, 7.0);
  EXPECT_EQ(b.rope_scaling.type, kernels::RopeScaling::Type::kYarn);
  EXPECT_DOUBLE_EQ(b.rope_scaling.factor, 4.0);
  EXPECT_TRUE(b.rope_scaling.truncate);
}

TEST(ModelConfigTest, RejectsBadMoeFieldsNamingThem) {
  auto with = [](const std::string& from, const std::string& to) {
    std::string json = kQwen3Moe;
    json.replace(json.find(from), from.size(), to);
    return ParseModelConfig(json);
  };
  EXPECT_THAT(with(R"("num_experts": 8)", R"("num_experts": 0)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_experts")));
  EXPECT_THAT(with(R"("num_experts_per_tok": 2)", R"("num_experts_per_tok": 9)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_experts_per_tok")));
  EXPECT_THAT(with(R"("moe_intermediate_size": 32)", R"("moe_intermediate_size": -1)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("moe_intermediate_size")));
  EXPECT_THAT(with(R"("mlp_only_layers": [])", R"("mlp_only_layers": [3])"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mlp_only_layers")));
  EXPECT_THAT(with(R"("decoder_sparse_step": 1)", R"("decoder_sparse_step": 0)"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("decoder_sparse_step")));
  EXPECT_THAT(with(R"("num_experts": 8)", R"("num_experts": "8")"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_experts")));
  std::string gpt = kGptOss;
  const std::string mxfp4 = R"("quant_method": "mxfp4")";
  gpt.replace(gpt.find(mxfp4), mxfp4.size(), R"("quant_method": "gptq")");
  EXPECT_THAT(ParseModelConfig(gpt), StatusIs(absl::StatusCode::kInvalidArgument,
                                              HasSubstr("quant_method \"gptq\"")));
  EXPECT_THAT(ParseModelConfig(R"({"model_type": "deepseek_v3"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("deepseek_v3")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
