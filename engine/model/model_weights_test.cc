#include "engine/model/model_weights.h"

#include <fstream>

#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

TEST(ModelWeightsTest, LoadsIntoWeightsTagAndOverwritesInPlace) {
  ModelTestEnv env;
  const std::string d = TestDir("weights_load");
  TinyModelOptions o;
  o.arch = "qwen3";
  o.dtype = TensorDtype::kBF16;
  ASSERT_OK(WriteTinyModel(o, d));
  ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(d + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
  ASSERT_OK_AND_ASSIGN(auto w, ModelWeights::Load(c, *ckpt, env.pool.get()));
  PoolInfo info = env.pool->Info();
  uint64_t weights_reserved = 0;
  for (const TagInfo& t : info.tags) {
    if (t.tag == MemoryTag::kWeights) weights_reserved = t.reserved_bytes;
  }
  EXPECT_GE(weights_reserved, w->allocated_bytes());
  int64_t params = 0;
  for (const WeightInfo& wi : w->List()) params += wi.NumElements();
  EXPECT_EQ(params, c.NumParameters());
  ASSERT_OK_AND_ASSIGN(WeightInfo k, w->Find("model.layers.1.self_attn.k_proj.weight"));
  // k_proj follows q_proj inside the fused qkv block.
  EXPECT_EQ(k.data, w->layer(1).qkv + c.QSize() * c.hidden_size);
  std::vector<float> ones(k.NumElements(), 1.0f);
  float* before = k.data;
  ASSERT_OK(w->Overwrite(k.name, TensorDtype::kF32, k.shape, ones.data(), ones.size() * 4));
  EXPECT_EQ(w->Find(k.name)->data, before);
  EXPECT_EQ(before[0], 1.0f);
  EXPECT_THAT(w->Overwrite(k.name, TensorDtype::kF32, {1, 2}, ones.data(), 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("k_proj")));
  EXPECT_THAT(w->Overwrite("nope", TensorDtype::kF32, {1}, ones.data(), 4),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST(ModelWeightsTest, MissingTensorOrWrongShapeIsNamed) {
  ModelTestEnv env;
  const std::string d = TestDir("weights_bad");
  TinyModelOptions o;
  ASSERT_OK(WriteTinyModel(o, d));
  ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(d + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
  ModelConfig bigger = c;
  bigger.intermediate_size += 2;
  EXPECT_THAT(ModelWeights::Load(bigger, *ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gate_proj")));
  ModelConfig deeper = c;
  deeper.num_layers += 1;
  deeper.layer_types.push_back(LayerType::kFullAttention);
  EXPECT_THAT(ModelWeights::Load(deeper, *ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("model.layers.2.")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
