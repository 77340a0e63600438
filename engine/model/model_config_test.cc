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
  EXPECT_THAT(ParseModelConfig("{" + base + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 2}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("yarn")));
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

}  // namespace
}  // namespace engine
}  // namespace colo
