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
