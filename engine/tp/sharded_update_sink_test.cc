#include "engine/tp/sharded_update_sink.h"

#include <cstring>
#include <random>

#include "engine/model/model_weights.h"
#include "engine/model/safetensors.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/tp/shard_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

TinyModelOptions Model(uint64_t seed) {
  TinyModelOptions o;
  o.arch = "qwen3";
  o.layers = 2;
  o.hidden = 32;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = 45;  // the last of 2 ranks holds a padding row
  o.seed = seed;
  return o;
}

// Stages every tensor of checkpoint `from` (full tensors, in random chunks;
// bfloat16 on the wire for some) into a rank's sink over weights loaded from
// another checkpoint; after Commit the rank holds `from`'s shard, exactly
// what loading `from` gives it.
class ShardedUpdateSinkArchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ShardedUpdateSinkArchTest, KeepsTheRanksShardOfFullTensors) {
  const std::string old_dir = TestDir("sink_old_" + GetParam()),
                    new_dir = TestDir("sink_new_" + GetParam());
  TinyModelOptions before = Model(1);
  before.arch = GetParam();
  before.experts = 4;
  before.moe_intermediate = 32;
  if (before.arch == "gpt_oss") before.sliding_window = 8;
  TinyModelOptions bf = before;
  bf.seed = 2;
  bf.dtype = TensorDtype::kBF16;
  ASSERT_OK(WriteTinyModel(before, old_dir));
  ASSERT_OK(WriteTinyModel(bf, new_dir));
  ASSERT_OK_AND_ASSIGN(ModelConfig full, LoadModelConfig(old_dir + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto old_ckpt, SafetensorsCheckpoint::Open(old_dir));
  ASSERT_OK_AND_ASSIGN(auto new_ckpt, SafetensorsCheckpoint::Open(new_dir));
  std::mt19937 rng(3);
  for (int rank = 0; rank < 2; ++rank) {
    ModelTestEnv env;
    ASSERT_OK_AND_ASSIGN(ShardPlan plan, ShardPlan::Create(full, rank, 2));
    ASSERT_OK_AND_ASSIGN(auto live, ModelWeights::Allocate(plan.local_config(), env.pool.get()));
    ASSERT_OK(ReadShard(*old_ckpt, plan, live.get()));
    ASSERT_OK_AND_ASSIGN(auto want, ModelWeights::Allocate(plan.local_config(), env.pool.get()));
    ASSERT_OK(ReadShard(*new_ckpt, plan, want.get()));
    ASSERT_OK_AND_ASSIGN(auto sink,
                         ShardedUpdateSink::Create(&plan, live.get(), env.allocator.get()));
    std::vector<weight_sync::TensorSpec> specs;
    for (const auto& [name, view] : new_ckpt->tensors()) {
      specs.push_back({name, view->dtype, view->shape});
    }
    EXPECT_EQ(sink->ExpectedTensors().size(), specs.size());
    ASSERT_OK(sink->Begin(specs));
    for (const auto& [name, view] : new_ckpt->tensors()) {
      for (size_t off = 0; off < view->bytes;) {
        const size_t n = std::min<size_t>(view->bytes - off, 2 + rng() % 300);
        ASSERT_OK(sink->Stage(name, off, view->data + off, n));
        off += n;
      }
    }
    ASSERT_OK(sink->CheckComplete());
    ASSERT_OK(sink->Commit());
    for (const WeightInfo& w : live->List()) {
      const WeightInfo expected = *want->Find(w.name);
      EXPECT_EQ(std::memcmp(w.data, expected.data, w.NumElements() * sizeof(float)), 0)
          << w.name << " rank " << rank;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, ShardedUpdateSinkArchTest,
                         ::testing::Values("qwen3", "qwen3_moe", "gpt_oss"));

TEST(ShardedUpdateSinkTest, ValidatesAgainstFullShapesListingEveryOffender) {
  const std::string dir = TestDir("sink_validate");
  ASSERT_OK(WriteTinyModel(Model(1), dir));
  ASSERT_OK_AND_ASSIGN(ModelConfig full, LoadModelConfig(dir + "/config.json"));
  ModelTestEnv env;
  ASSERT_OK_AND_ASSIGN(ShardPlan plan, ShardPlan::Create(full, 1, 2));
  ASSERT_OK_AND_ASSIGN(auto live, ModelWeights::Allocate(plan.local_config(), env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto sink, ShardedUpdateSink::Create(&plan, live.get(), env.allocator.get()));
  // The full q_proj shape is accepted; the shard's shape and unknown names are not.
  EXPECT_OK(sink->Validate({{"model.layers.0.self_attn.q_proj.weight", TensorDtype::kF32, {32, 32}}}));
  EXPECT_THAT(sink->Validate({{"model.layers.0.self_attn.q_proj.weight", TensorDtype::kF32, {16, 32}},
                              {"model.layers.9.mlp.up_proj.weight", TensorDtype::kF32, {64, 32}}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("update has shape [16, 32]"),
                             HasSubstr("unknown tensor \"model.layers.9.mlp.up_proj.weight\""))));
}

}  // namespace
}  // namespace engine
}  // namespace colo
