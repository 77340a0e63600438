#include "engine/model/model_weights.h"

#include <cmath>
#include <fstream>
#include <iterator>

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

// Every expert tensor is a named weight in the one `weights` allocation.
TEST(ModelWeightsTest, MoeExpertsAreNamedWeightsInTheWeightsTag) {
  ModelTestEnv env;
  for (const std::string arch : {"qwen3_moe", "gpt_oss"}) {
    const std::string d = TestDir("weights_moe_" + arch);
    TinyModelOptions o;
    o.arch = arch;
    o.layers = 2;
    o.experts = 4;
    o.experts_per_token = 2;
    o.moe_intermediate = 32;
    ASSERT_OK(WriteTinyModel(o, d));
    ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(d + "/config.json"));
    ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
    ASSERT_OK_AND_ASSIGN(auto w, ModelWeights::Load(c, *ckpt, env.pool.get()));
    int64_t params = 0;
    const char* base = static_cast<const char*>(static_cast<const void*>(w->embed()));
    for (const WeightInfo& wi : w->List()) {
      params += wi.NumElements();
      const char* p = static_cast<const char*>(static_cast<const void*>(wi.data));
      EXPECT_GE(p, base) << wi.name;
      EXPECT_LE(p + wi.NumElements() * 4, base + w->allocated_bytes()) << wi.name;
      // Each tensor holds exactly the checkpoint's values (HF layout).
      std::vector<float> want(wi.NumElements());
      ASSERT_OK(ckpt->ReadAsFloat(wi.name, wi.shape, want.data()));
      ASSERT_EQ(std::vector<float>(wi.data, wi.data + wi.NumElements()), want) << wi.name;
    }
    EXPECT_EQ(params, c.NumParameters()) << arch;
    const LayerWeights& L = w->layer(1);
    ASSERT_EQ(L.expert_gate_up.size(), 4u);
    if (arch == "qwen3_moe") {
      ASSERT_OK_AND_ASSIGN(WeightInfo up, w->Find("model.layers.1.mlp.experts.3.up_proj.weight"));
      EXPECT_EQ(up.data, L.expert_gate_up[3] + 32 * c.hidden_size);  // after gate_proj
      ASSERT_OK_AND_ASSIGN(WeightInfo down, w->Find("model.layers.1.mlp.experts.3.down_proj.weight"));
      EXPECT_EQ(down.data, L.expert_down[3]);
    } else {
      ASSERT_OK_AND_ASSIGN(WeightInfo gu, w->Find("model.layers.1.mlp.experts.gate_up_proj"));
      EXPECT_EQ(gu.shape, (std::vector<int64_t>{4, c.hidden_size, 64}));
      EXPECT_EQ(L.expert_gate_up[2], gu.data + 2 * c.hidden_size * 64);
      ASSERT_OK_AND_ASSIGN(WeightInfo sinks, w->Find("model.layers.1.self_attn.sinks"));
      EXPECT_EQ(sinks.data, L.sinks);
      EXPECT_NE(L.router_bias, nullptr);
    }
  }
}

TEST(ModelWeightsTest, Mxfp4ExpertsLoadDequantizedUnderTheirHfNames) {
  ModelTestEnv env;
  TinyModelOptions o;
  o.arch = "gpt_oss";
  o.layers = 2;
  o.experts = 4;
  o.moe_intermediate = 32;
  o.mxfp4 = true;
  const std::string d = TestDir("weights_mxfp4");
  ASSERT_OK(WriteTinyModel(o, d));
  ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(d + "/config.json"));
  EXPECT_TRUE(c.moe.mxfp4);
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
  EXPECT_FALSE(ckpt->Find("model.layers.0.mlp.experts.down_proj").ok());
  ASSERT_OK(ckpt->Find("model.layers.0.mlp.experts.down_proj_blocks").status());
  ASSERT_OK_AND_ASSIGN(auto w, ModelWeights::Load(c, *ckpt, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(WeightInfo down, w->Find("model.layers.0.mlp.experts.down_proj"));
  EXPECT_EQ(down.dtype, TensorDtype::kF32);
  EXPECT_EQ(down.shape, (std::vector<int64_t>{4, 32, c.hidden_size}));
  // Values are e2m1 codes times powers of two.
  for (int64_t i = 0; i < down.NumElements(); ++i) {
    int exponent = 0;
    const float m = std::frexp(std::fabs(down.data[i]), &exponent);
    ASSERT_TRUE(m == 0.0f || m == 0.5f || m == 0.75f) << i << " " << down.data[i];
  }
}

// Bad checkpoints: a missing expert, more experts than config.json says,
// MXFP4 scales of the wrong shape, an unknown model_type.
TEST(ModelWeightsTest, BadMoeCheckpointsAreNamed) {
  ModelTestEnv env;
  TinyModelOptions o;
  o.arch = "qwen3_moe";
  o.layers = 2;
  o.experts = 4;
  o.moe_intermediate = 16;
  const std::string d = TestDir("weights_moe_bad");
  ASSERT_OK(WriteTinyModel(o, d));
  ASSERT_OK_AND_ASSIGN(ModelConfig c, LoadModelConfig(d + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(d));
  ModelConfig more = c;
  more.moe.num_experts = 5;
  // The router's shape shows the count first.
  EXPECT_THAT(ModelWeights::Load(more, *ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"model.layers.0.mlp.gate.weight\" has shape [4, 64] but "
                                 "config.json implies [5, 64]")));
  ModelConfig fewer = c;
  fewer.moe.num_experts = 3;
  EXPECT_THAT(ModelWeights::Load(fewer, *ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is expert 3 but config.json has num_experts=3")));
  ModelConfig dense_layer = c;
  dense_layer.moe_layers[1] = false;
  EXPECT_THAT(ModelWeights::Load(dense_layer, *ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dense MLP layer")));

  // A checkpoint without one expert's tensor.
  const std::string holey = TestDir("weights_moe_holey");
  SafetensorsWriter writer;
  for (const auto& [name, view] : ckpt->tensors()) {
    if (name == "model.layers.1.mlp.experts.2.down_proj.weight") continue;
    ASSERT_OK(writer.AddRaw(name, view->dtype_name, view->shape,
                            std::string(reinterpret_cast<const char*>(view->data), view->bytes)));
  }
  ASSERT_OK(writer.Write(holey + "/model.safetensors"));
  ASSERT_OK_AND_ASSIGN(auto holey_ckpt, SafetensorsCheckpoint::Open(holey));
  EXPECT_THAT(ModelWeights::Load(c, *holey_ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("model.layers.1.mlp.experts.2.down_proj.weight")));

  // gpt_oss: the fused tensors' shapes carry the expert count; MXFP4 scales
  // of the wrong shape are named.
  TinyModelOptions g;
  g.arch = "gpt_oss";
  g.layers = 2;
  g.experts = 4;
  g.moe_intermediate = 32;
  g.mxfp4 = true;
  const std::string gd = TestDir("weights_gpt_bad");
  ASSERT_OK(WriteTinyModel(g, gd));
  ASSERT_OK_AND_ASSIGN(ModelConfig gc, LoadModelConfig(gd + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto gckpt, SafetensorsCheckpoint::Open(gd));
  ModelConfig six = gc;
  six.moe.num_experts = 6;
  EXPECT_THAT(ModelWeights::Load(six, *gckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("mlp.router.weight")));
  const std::string bad_scales = TestDir("weights_gpt_bad_scales");
  SafetensorsWriter w2;
  for (const auto& [name, view] : gckpt->tensors()) {
    std::string bytes(reinterpret_cast<const char*>(view->data), view->bytes);
    std::vector<int64_t> shape = view->shape;
    if (name == "model.layers.1.mlp.experts.gate_up_proj_scales") {
      shape.back() += 1;  // one scale too many per row
      bytes.resize(bytes.size() / view->shape.back() * shape.back(), '\x7f');
    }
    ASSERT_OK(w2.AddRaw(name, view->dtype_name, shape, bytes));
  }
  ASSERT_OK(w2.Write(bad_scales + "/model.safetensors"));
  ASSERT_OK_AND_ASSIGN(auto bad_ckpt, SafetensorsCheckpoint::Open(bad_scales));
  EXPECT_THAT(ModelWeights::Load(gc, *bad_ckpt, env.pool.get()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("\"model.layers.1.mlp.experts.gate_up_proj_scales\" has shape")));
  std::string text;
  {
    std::ifstream in(gd + "/config.json");
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  text.replace(text.find("\"gpt_oss\""), 9, "\"mixtral\"");
  EXPECT_THAT(ParseModelConfig(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("unsupported model_type \"mixtral\"")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
