#include "engine/model/tiny_model.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/model/safetensors.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

std::string Dir(const std::string& name) {
  const char* base = std::getenv("TEST_TMPDIR");
  return std::string(base ? base : "/tmp") + "/" + name;
}

std::string ReadAll(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(TinyModelTest, DeterministicPerSeedAndLoadable) {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 3;
  o.layer_types = {LayerType::kFullAttention, LayerType::kSlidingAttention,
                   LayerType::kFullAttention};
  o.sliding_window = 4;
  o.seed = 7;
  ASSERT_OK(WriteTinyModel(o, Dir("tiny_a")));
  ASSERT_OK(WriteTinyModel(o, Dir("tiny_b")));
  o.seed = 8;
  ASSERT_OK(WriteTinyModel(o, Dir("tiny_c")));
  const std::string a = ReadAll(Dir("tiny_a") + "/model.safetensors");
  EXPECT_EQ(a, ReadAll(Dir("tiny_b") + "/model.safetensors"));
  EXPECT_NE(a, ReadAll(Dir("tiny_c") + "/model.safetensors"));
  ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(Dir("tiny_a") + "/config.json"));
  EXPECT_EQ(c.layer_types[1], LayerType::kSlidingAttention);
  EXPECT_EQ(c.sliding_window, 4);
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(Dir("tiny_a")));
  int64_t n = 0;
  for (const auto& [name, v] : ckpt->tensors()) n += v->NumElements();
  EXPECT_EQ(n, c.NumParameters());
}

TEST(TinyModelTest, RejectsInconsistentOptions) {
  TinyModelOptions o;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention};
  EXPECT_THAT(TinyModelConfig(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.layer_types = {LayerType::kFullAttention};
  EXPECT_THAT(TinyModelConfig(o), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseLayerTypeList("full,weird"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TinyModelTest, MoeArchitecturesWriteEveryTensorOfTheirConfig) {
  for (bool mxfp4 : {false, true}) {
    for (const std::string arch : {"qwen3_moe", "gpt_oss"}) {
      if (mxfp4 && arch != "gpt_oss") continue;
      TinyModelOptions o;
      o.arch = arch;
      o.layers = 2;
      o.experts = 4;
      o.experts_per_token = 2;
      o.moe_intermediate = 32;
      o.mxfp4 = mxfp4;
      const std::string d = Dir("tiny_" + arch + (mxfp4 ? "_mxfp4" : ""));
      ASSERT_OK(WriteTinyModel(o, d));
      ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(d + "/config.json"));
      EXPECT_EQ(c.model_type, arch);
      EXPECT_EQ(c.moe.num_experts, 4);
      EXPECT_EQ(c.moe.mxfp4, mxfp4);
      ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
      int64_t n = 0, fp4_bytes = 0;
      for (const auto& [name, v] : ckpt->tensors()) {
        if (v->dtype_name == "U8") {
          if (name.size() > 7 && name.compare(name.size() - 7, 7, "_blocks") == 0) {
            fp4_bytes += v->NumElements();
          }
          continue;
        }
        n += v->NumElements();
      }
      // MXFP4: two values per block byte.
      EXPECT_EQ(n + 2 * fp4_bytes, c.NumParameters()) << arch << " mxfp4=" << mxfp4;
      if (arch == "gpt_oss") {
        EXPECT_EQ(c.layer_types[0], LayerType::kSlidingAttention);
        EXPECT_EQ(c.layer_types[1], LayerType::kFullAttention);
        EXPECT_EQ(c.sliding_window, 128);
        EXPECT_TRUE(c.attention_sinks);
        EXPECT_EQ(c.max_position_embeddings, 131072);
      }
    }
  }
}

TEST(TinyModelTest, RejectsInconsistentMoeOptions) {
  TinyModelOptions o;
  o.arch = "qwen3_moe";
  o.experts = 2;
  o.experts_per_token = 3;
  EXPECT_THAT(TinyModelConfig(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.experts_per_token = 1;
  o.mxfp4 = true;  // gpt_oss only
  EXPECT_THAT(TinyModelConfig(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.arch = "gpt_oss";
  o.moe_intermediate = 40;  // not a multiple of 32
  EXPECT_THAT(TinyModelConfig(o), StatusIs(absl::StatusCode::kInvalidArgument));
  o.arch = "mixtral";
  EXPECT_THAT(TinyModelConfig(o), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TinyPromptTest, DeterministicInRangeAndSeedDependent) {
  const std::vector<int32_t> a = TinyPrompt(3, 50, 17);
  EXPECT_EQ(a, TinyPrompt(3, 50, 17));
  EXPECT_NE(a, TinyPrompt(4, 50, 17));
  ASSERT_EQ(a.size(), 50u);
  for (int32_t t : a) {
    EXPECT_GE(t, 0);
    EXPECT_LT(t, 17);
  }
}

}  // namespace
}  // namespace engine
}  // namespace colo
