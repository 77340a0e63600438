// The sharded forward (ShardPlan + ReadShard + the TP hooks of
// TransformerModel::Forward) over real Gloo groups, one thread per rank:
// every rank ends with the same logits, they equal the unsharded model's
// within float rounding (the row-parallel sums add in another order), and a
// request's logits do not depend on the batch it ran in.
#include <cmath>
#include <thread>

#include "engine/model/forward.h"
#include "engine/model/simple_kv_cache.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/tp/gloo_tp_comm.h"
#include "engine/tp/shard_loader.h"
#include "proto/status/status_macros.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int64_t> chunks;  // new tokens per step
};

// Runs every sequence step by step (all sequences in one batch per step,
// or each alone when `batched` is false) and returns each step's logits.
absl::StatusOr<std::vector<std::vector<float>>> Run(TransformerModel& model, TaggedPool* pool,
                                                    const std::vector<Seq>& seqs, bool batched) {
  ASSIGN_OR_RETURN(auto kv, SimpleKvCache::Create(model.config(), 512, pool));
  std::vector<std::vector<int32_t>> slots;
  for (const Seq& s : seqs) {
    ASSIGN_OR_RETURN(auto sl, kv->AddSequence(s.tokens.size()));
    slots.push_back(sl);
  }
  std::vector<std::vector<float>> out(seqs.size());
  std::vector<int64_t> cached(seqs.size(), 0);
  const size_t steps = seqs[0].chunks.size();
  for (size_t step = 0; step < steps; ++step) {
    std::vector<ForwardRequest> batch;
    for (size_t i = 0; i < seqs.size(); ++i) {
      ForwardRequest r;
      r.cached_len = cached[i];
      r.new_tokens = absl::MakeConstSpan(seqs[i].tokens.data() + cached[i], seqs[i].chunks[step]);
      r.slots = slots[i];
      batch.push_back(r);
    }
    ForwardOptions fo;
    fo.return_logits = true;
    fo.sample = false;
    const int64_t vocab = model.vocab_size();
    if (batched) {
      ASSIGN_OR_RETURN(ForwardResult res, model.Forward(batch, kv->view(), fo));
      for (size_t i = 0; i < seqs.size(); ++i) {
        out[i].insert(out[i].end(), res.logits.begin() + i * vocab,
                      res.logits.begin() + (i + 1) * vocab);
      }
    } else {
      for (size_t i = 0; i < seqs.size(); ++i) {
        std::vector<ForwardRequest> one = {batch[i]};
        ASSIGN_OR_RETURN(ForwardResult res, model.Forward(one, kv->view(), fo));
        out[i].insert(out[i].end(), res.logits.begin(), res.logits.end());
      }
    }
    for (size_t i = 0; i < seqs.size(); ++i) cached[i] += seqs[i].chunks[step];
  }
  return out;
}

std::vector<Seq> Sequences(int vocab) {
  return {{TinyPrompt(1, 14, vocab), {9, 3, 1, 1}},
          {TinyPrompt(2, 20, vocab), {12, 6, 1, 1}},
          {TinyPrompt(3, 7, vocab), {4, 1, 1, 1}}};
}

// Per rank: the logits of Run(batched) and Run(one by one).
struct RankResult {
  absl::Status status;
  std::vector<std::vector<float>> batched, alone;
};

std::vector<RankResult> RunSharded(const std::string& dir, int size) {
  std::vector<RankResult> results(size);
  absl::StatusOr<std::unique_ptr<weight_sync::TcpStoreServer>> server =
      weight_sync::TcpStoreServer::Start(
          {.bind_address = "127.0.0.1", .port = 0, .group_name = "colo-tp", .world_size = size});
  if (!server.ok()) {
    results[0].status = server.status();
    return results;
  }
  const int port = (*server)->port();
  std::vector<std::unique_ptr<weight_sync::TcpStoreServer>> servers(size);
  servers[0] = *std::move(server);
  std::vector<std::thread> threads;
  for (int rank = 0; rank < size; ++rank) {
    threads.emplace_back([&, rank, server_ptr = std::move(servers[rank])]() mutable {
      RankResult& out = results[rank];
      auto body = [&]() -> absl::Status {
        ModelTestEnv env;
        GlooTpComm::Options co;
        co.master_port = port;
        co.rank = rank;
        co.size = size;
        co.init_timeout = absl::Seconds(60);
        co.timeout = absl::Seconds(60);
        ASSIGN_OR_RETURN(std::unique_ptr<GlooTpComm> comm,
                         GlooTpComm::Create(co, std::move(server_ptr)));
        kernels::ThreadPool threads(1);
        ShardedModelOptions mo;
        mo.model_dir = dir;
        mo.rank = rank;
        mo.size = size;
        mo.weights_pool = env.pool.get();
        mo.allocator = env.allocator.get();
        mo.threads = &threads;
        mo.collectives = comm.get();
        ASSIGN_OR_RETURN(ShardedModel sharded, LoadShardedModel(mo));
        const int vocab = static_cast<int>(sharded.full_config.vocab_size);
        ASSIGN_OR_RETURN(out.batched, Run(*sharded.model, env.pool.get(), Sequences(vocab), true));
        ASSIGN_OR_RETURN(out.alone, Run(*sharded.model, env.pool.get(), Sequences(vocab), false));
        return absl::OkStatus();
      };
      out.status = body();
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

void ExpectShardedMatchesUnsharded(const TinyModelOptions& o, const std::string& name, int size) {
  const std::string dir = TestDir(name);
  ASSERT_OK(WriteTinyModel(o, dir));
  ModelTestEnv env;
  TransformerModel::Options mo;
  mo.model_dir = dir;
  mo.weights_pool = env.pool.get();
  mo.allocator = env.allocator.get();
  ASSERT_OK_AND_ASSIGN(auto full, TransformerModel::Load(mo));
  ASSERT_OK_AND_ASSIGN(auto want, Run(*full, env.pool.get(), Sequences(o.vocab), true));
  std::vector<RankResult> ranks = RunSharded(dir, size);
  for (int r = 0; r < size; ++r) ASSERT_OK(ranks[r].status) << "rank " << r;
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(ranks[0].batched[i].size(), want[i].size());
    for (int r = 0; r < size; ++r) {
      // Every rank holds the same bits, and the batch does not change them.
      EXPECT_EQ(ranks[r].batched[i], ranks[0].batched[i]) << name << " rank " << r;
      EXPECT_EQ(ranks[r].alone[i], ranks[0].batched[i]) << name << " rank " << r;
    }
    double worst = 0;
    for (size_t v = 0; v < want[i].size(); ++v) {
      worst = std::max(worst, std::fabs(static_cast<double>(ranks[0].batched[i][v]) - want[i][v]) /
                                  (1 + std::fabs(want[i][v])));
    }
    EXPECT_LT(worst, 1e-4) << name << " sequence " << i << " tp " << size;
  }
}

TinyModelOptions Qwen3() {
  TinyModelOptions o;
  o.arch = "qwen3";
  o.layers = 3;
  o.hidden = 64;
  o.heads = 8;
  o.kv_heads = 2;
  o.intermediate = 128;
  o.vocab = 203;  // not a multiple of 2 or 4: the last rank is padded
  o.seed = 7;
  return o;
}

TEST(ShardedForwardTest, Tp2QwenMatchesUnsharded) {
  ExpectShardedMatchesUnsharded(Qwen3(), "tp2_qwen3", 2);
}

TEST(ShardedForwardTest, Tp4ReplicatesKvHeadsAndMatchesUnsharded) {
  ExpectShardedMatchesUnsharded(Qwen3(), "tp4_qwen3", 4);
}

TEST(ShardedForwardTest, Tp2LlamaWithBiasesTiedEmbeddingsAndSlidingLayers) {
  TinyModelOptions o;
  o.arch = "qwen2";  // q/k/v biases
  o.layers = 3;
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = 128;
  o.tie_embeddings = true;
  o.sliding_window = 6;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention,
                   LayerType::kSlidingAttention};
  o.seed = 3;
  ExpectShardedMatchesUnsharded(o, "tp2_qwen2_swa", 2);
}

TEST(ShardedForwardTest, Tp2Qwen3MoeWithADenseLayerMatchesUnsharded) {
  TinyModelOptions o;
  o.arch = "qwen3_moe";
  o.layers = 3;
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = 150;
  o.experts = 6;
  o.experts_per_token = 2;
  o.moe_intermediate = 48;
  o.mlp_only_layers = {1};  // layer 1 keeps a dense MLP
  o.seed = 4;
  ExpectShardedMatchesUnsharded(o, "tp2_qwen3_moe", 2);
}

TEST(ShardedForwardTest, Tp2GptOssMxfp4MatchesUnsharded) {
  TinyModelOptions o;
  o.arch = "gpt_oss";
  o.layers = 2;  // sliding + full, attention sinks, YaRN
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = 130;
  o.experts = 4;
  o.experts_per_token = 2;
  o.moe_intermediate = 64;
  o.sliding_window = 8;
  o.mxfp4 = true;
  o.seed = 6;
  ExpectShardedMatchesUnsharded(o, "tp2_gpt_oss", 2);
}

}  // namespace
}  // namespace engine
}  // namespace colo
