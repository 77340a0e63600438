#include "engine/tp/shard_plan.h"

#include <cstring>
#include <map>
#include <random>

#include "engine/model/model_weights.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

ModelConfig Config(int heads, int kv_heads, int64_t vocab, bool bias = false,
                   const std::string& arch = "llama", bool tie = false) {
  TinyModelOptions o;
  o.arch = arch;
  o.layers = 2;
  o.hidden = 64;
  o.heads = heads;
  o.kv_heads = kv_heads;
  o.head_dim = 8;
  o.intermediate = 96;
  o.vocab = vocab;
  o.tie_embeddings = tie;
  absl::StatusOr<ModelConfig> c = TinyModelConfig(o);
  EXPECT_TRUE(c.ok()) << c.status();
  c->qkv_bias = c->qkv_bias || bias;
  c->o_bias = c->o_bias || bias;
  return *c;
}

TEST(ShardPlanTest, RejectsSizesThatDoNotDivide) {
  EXPECT_THAT(ShardPlan::Create(Config(4, 2, 100), 0, 3).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("4 attention heads")));
  EXPECT_THAT(ShardPlan::Create(Config(12, 6, 100), 0, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("6 KV heads")));
  EXPECT_THAT(ShardPlan::Create(Config(4, 2, 100), 2, 2).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(ShardPlan::Create(Config(4, 2, 3), 0, 4).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocabulary")));
}

TEST(ShardPlanTest, LocalConfigSplitsHeadsIntermediateAndPadsVocab) {
  ASSERT_OK_AND_ASSIGN(ShardPlan p, ShardPlan::Create(Config(8, 4, 101), 3, 4));
  EXPECT_EQ(p.local_config().num_heads, 2);
  EXPECT_EQ(p.local_config().num_kv_heads, 1);
  EXPECT_EQ(p.local_config().intermediate_size, 24);
  EXPECT_EQ(p.local_config().vocab_size, 26);  // ceil(101 / 4)
  EXPECT_EQ(p.vocab_begin(), 78);
  ASSERT_OK_AND_ASSIGN(TensorShard embed, p.Shard("model.embed_tokens.weight"));
  EXPECT_EQ(embed.count, 23);  // 101 - 78 rows; 3 rows of padding
  EXPECT_EQ(embed.local_shape, (std::vector<int64_t>{26, 64}));
  EXPECT_THAT(p.Shard("model.layers.2.mlp.up_proj.weight").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tensor-parallel")));
  EXPECT_THAT(p.Shard("model.layers.0.mlp.experts.0.up_proj.weight").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ShardPlanTest, FewerKvHeadsThanRanksReplicatesTheHeadOfTheRanksQueries) {
  // 8 heads, 2 KV heads, 4 ranks: ranks 0,1 use KV head 0; ranks 2,3 head 1.
  for (int rank = 0; rank < 4; ++rank) {
    ASSERT_OK_AND_ASSIGN(ShardPlan p, ShardPlan::Create(Config(8, 2, 64), rank, 4));
    EXPECT_EQ(p.local_config().num_kv_heads, 1);
    EXPECT_EQ(p.first_kv_head(), rank / 2);
    // The rank's first query head maps to its KV head (group of 4 queries).
    EXPECT_EQ(p.first_head() / 4, p.first_kv_head());
    ASSERT_OK_AND_ASSIGN(TensorShard k, p.Shard("model.layers.0.self_attn.k_proj.weight"));
    EXPECT_EQ(k.begin, (rank / 2) * 8);
    EXPECT_EQ(k.count, 8);
  }
}

// For every tensor: the local shapes equal ModelWeights of the local config,
// and the pieces of all ranks cover every byte of the full tensor (replicas
// identically), so a full tensor split by ForEachLocalRange in any chunking
// gives each rank the slice ReadShard gives it.
TEST(ShardPlanTest, PiecesOfAllRanksCoverEveryTensorInAnyChunking) {
  for (const auto& [heads, kv, size, bias, tie] :
       std::vector<std::tuple<int, int, int, bool, bool>>{
           {4, 2, 2, false, false}, {8, 2, 4, true, false}, {8, 8, 4, false, true}}) {
    const ModelConfig full = Config(heads, kv, 67, bias, "qwen3", tie);
    ModelTestEnv env;
    std::mt19937 rng(5);
    std::map<std::string, std::vector<int>> coverage;  // byte -> times held
    for (int rank = 0; rank < size; ++rank) {
      ASSERT_OK_AND_ASSIGN(ShardPlan p, ShardPlan::Create(full, rank, size));
      ASSERT_OK_AND_ASSIGN(auto local, ModelWeights::Allocate(p.local_config(), env.pool.get()));
      for (const WeightInfo& w : local->List()) {
        ASSERT_OK_AND_ASSIGN(TensorShard s, p.Shard(w.name));
        ASSERT_EQ(s.local_shape, w.shape) << w.name;
        const int64_t n = s.FullElements();
        // Full tensor: element i holds i; chunked delivery of its bytes.
        std::vector<float> data(n);
        for (int64_t i = 0; i < n; ++i) data[i] = static_cast<float>(i);
        std::vector<float> got(s.LocalElements(), -1.0f);
        int64_t off = 0;
        while (off < n * 4) {
          const int64_t len = std::min<int64_t>(n * 4 - off, 1 + rng() % 97);
          ShardPlan::ForEachLocalRange(s, 4, off, len, [&](int64_t lo, int64_t ro, int64_t b) {
            std::memcpy(reinterpret_cast<char*>(got.data()) + lo,
                        reinterpret_cast<const char*>(data.data()) + off + ro, b);
          });
          off += len;
        }
        std::vector<int>& cov = coverage[w.name];
        cov.resize(n * 4);
        for (const HeldPiece& piece : ShardPlan::HeldPieces(s, 4)) {
          for (int64_t b = piece.offset; b < piece.offset + piece.bytes; ++b) ++cov[b];
          for (int64_t e = 0; e < piece.bytes / 4; ++e) {
            EXPECT_EQ(got[piece.local_offset / 4 + e], data[piece.offset / 4 + e]) << w.name;
          }
        }
      }
    }
    for (const auto& [name, cov] : coverage) {
      const bool kv_replicated = kv < size && (name.find("k_proj") != std::string::npos ||
                                               name.find("v_proj") != std::string::npos);
      const bool replicated = name.find("norm") != std::string::npos ||
                              name.find("o_proj.bias") != std::string::npos;
      const int want = replicated ? size : kv_replicated ? size / kv : 1;
      for (size_t b = 0; b < cov.size(); ++b) {
        ASSERT_EQ(cov[b], want) << name << " byte " << b << " (tp " << size << ")";
      }
    }
  }
}

// MoE models: every tensor of qwen3_moe and gpt_oss has a rule, the local
// shapes are ModelWeights' of the local config, and gpt-oss's expert down
// bias is rank 0's alone (the others hold zeros).
TEST(ShardPlanTest, MoeTensorsSplitOnTheExpertsIntermediateSize) {
  for (const std::string arch : {"qwen3_moe", "gpt_oss"}) {
    TinyModelOptions o;
    o.arch = arch;
    o.layers = 2;
    o.hidden = 64;
    o.heads = 4;
    o.kv_heads = 2;
    o.vocab = 99;
    o.experts = 4;
    o.moe_intermediate = 64;
    o.sliding_window = arch == "gpt_oss" ? 8 : 0;
    ASSERT_OK_AND_ASSIGN(ModelConfig full, TinyModelConfig(o));
    ModelTestEnv env;
    for (int rank = 0; rank < 2; ++rank) {
      ASSERT_OK_AND_ASSIGN(ShardPlan p, ShardPlan::Create(full, rank, 2));
      EXPECT_EQ(p.local_config().moe.intermediate_size, 32);
      ASSERT_OK_AND_ASSIGN(auto local, ModelWeights::Allocate(p.local_config(), env.pool.get()));
      for (const WeightInfo& w : local->List()) {
        ASSERT_OK_AND_ASSIGN(TensorShard s, p.Shard(w.name));
        EXPECT_EQ(s.local_shape, w.shape) << arch << " " << w.name;
        if (w.name.find("down_proj_bias") != std::string::npos) {
          EXPECT_EQ(ShardPlan::HeldPieces(s, 4).empty(), rank != 0) << w.name;
        }
      }
    }
  }
}

}  // namespace
}  // namespace engine
}  // namespace colo
