#include "engine/tp/tp_checksums.h"

#include "engine/model/model_weights.h"
#include "engine/model/safetensors.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/model/weight_checksums.h"
#include "engine/tp/shard_loader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

TinyModelOptions Model() {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.layers = 2;
  o.hidden = 32;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = 51;
  o.seed = 9;
  return o;
}

struct Ranks {
  ModelTestEnv env;
  std::vector<std::unique_ptr<ShardPlan>> plans;
  std::vector<std::unique_ptr<ModelWeights>> weights;
};

void LoadRanks(const std::string& dir, int size, Ranks* out) {
  ASSERT_OK_AND_ASSIGN(ModelConfig full, LoadModelConfig(dir + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(dir));
  for (int r = 0; r < size; ++r) {
    ASSERT_OK_AND_ASSIGN(ShardPlan p, ShardPlan::Create(full, r, size));
    out->plans.push_back(std::make_unique<ShardPlan>(p));
    ASSERT_OK_AND_ASSIGN(auto w, ModelWeights::Allocate(p.local_config(), out->env.pool.get()));
    ASSERT_OK(ReadShard(*ckpt, p, w.get()));
    out->weights.push_back(std::move(w));
  }
}

class TpChecksumsArchTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TpChecksumsArchTest, CombinedPiecesEqualTheFullTensorsChecksums) {
  const std::string dir = TestDir("tp_checksums_" + GetParam());
  TinyModelOptions o = Model();
  o.arch = GetParam();
  o.experts = 4;
  o.moe_intermediate = 64;
  o.heads = 4;
  o.kv_heads = 2;
  if (o.arch == "gpt_oss") o.sliding_window = 8;
  ASSERT_OK(WriteTinyModel(o, dir));
  ModelTestEnv env;
  ASSERT_OK_AND_ASSIGN(ModelConfig full, LoadModelConfig(dir + "/config.json"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, SafetensorsCheckpoint::Open(dir));
  ASSERT_OK_AND_ASSIGN(auto whole, ModelWeights::Load(full, *ckpt, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto want, ComputeWeightChecksums(*whole, {}));
  for (int size : {2, 4}) {
    Ranks ranks;
    LoadRanks(dir, size, &ranks);
    std::vector<colo::internal::TpChecksumsReply> pieces;
    for (int r = 0; r < size; ++r) {
      ASSERT_OK_AND_ASSIGN(auto p, ShardChecksumPieces(*ranks.plans[r], *ranks.weights[r], {}));
      pieces.push_back(p);
    }
    ASSERT_OK_AND_ASSIGN(auto got, CombineChecksumPieces(pieces));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].name, want[i].name);
      EXPECT_EQ(got[i].shape, want[i].shape) << got[i].name;
      EXPECT_EQ(got[i].crc32c, want[i].crc32c) << got[i].name << " tp " << size;
    }
    // A subset, by name.
    std::vector<colo::internal::TpChecksumsReply> some;
    for (int r = 0; r < size; ++r) {
      ASSERT_OK_AND_ASSIGN(auto p, ShardChecksumPieces(*ranks.plans[r], *ranks.weights[r],
                                                       {"model.layers.1.self_attn.o_proj.weight"}));
      some.push_back(p);
    }
    ASSERT_OK_AND_ASSIGN(auto one, CombineChecksumPieces(some));
    ASSERT_EQ(one.size(), 1u);
    EXPECT_EQ(one[0].crc32c,
              ComputeWeightChecksums(*whole, {"model.layers.1.self_attn.o_proj.weight"})
                  .value()[0]
                  .crc32c);
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, TpChecksumsArchTest,
                         ::testing::Values("qwen2", "qwen3_moe", "gpt_oss"));

TEST(TpChecksumsTest, UnknownNamesAndDisagreeingReplicasAreErrors) {
  const std::string dir = TestDir("tp_checksums_bad");
  ASSERT_OK(WriteTinyModel(Model(), dir));
  Ranks ranks;
  LoadRanks(dir, 4, &ranks);  // 2 KV heads on 4 ranks: replicated
  EXPECT_THAT(ShardChecksumPieces(*ranks.plans[0], *ranks.weights[0], {"nope"}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"nope\"")));
  ranks.weights[3]->Find("model.layers.0.self_attn.k_proj.weight")->data[5] += 1.0f;
  std::vector<colo::internal::TpChecksumsReply> pieces;
  for (int r = 0; r < 4; ++r) {
    pieces.push_back(ShardChecksumPieces(*ranks.plans[r], *ranks.weights[r], {}).value());
  }
  EXPECT_THAT(CombineChecksumPieces(pieces).status(),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("ranks 2 and 3 hold different bytes")));
}

}  // namespace
}  // namespace engine
}  // namespace colo
