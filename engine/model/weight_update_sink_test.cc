#include "engine/model/weight_update_sink.h"

#include <cstring>
#include <random>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "engine/model/weight_checksums.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"
#include "weight_sync/crc32c.h"

namespace colo {
namespace engine {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using weight_sync::TensorSpec;

struct Fixture {
  ModelTestEnv env;
  std::unique_ptr<ModelWeights> weights;
  std::unique_ptr<ModelWeightUpdateSink> sink;

  Fixture() {
    TinyModelOptions o;
    o.layers = 1;
    o.hidden = 32;
    o.vocab = 64;
    ModelConfig config = TinyModelConfig(o).value();
    weights = ModelWeights::Allocate(config, env.pool.get()).value();
    sink = ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()}).value();
  }
  WeightInfo Info(const std::string& name) { return weights->Find(name).value(); }
};

TensorSpec SpecOf(const WeightInfo& w, TensorDtype dtype) {
  TensorSpec s;
  s.name = w.name;
  s.dtype = dtype;
  s.shape = w.shape;
  return s;
}

// bf16 encodings of `values`.
std::vector<uint16_t> ToBf16(const std::vector<float>& values) {
  std::vector<uint16_t> out;
  for (float v : values) out.push_back(FloatToBf16(v));
  return out;
}

TEST(ModelWeightUpdateSinkTest, ValidateListsEveryOffender) {
  Fixture f;
  WeightInfo embed = f.Info("model.embed_tokens.weight");
  TensorSpec good = SpecOf(embed, TensorDtype::kBF16);
  TensorSpec unknown = good;
  unknown.name = "model.layers.9.mlp.up_proj.weight";
  TensorSpec wrong_shape = SpecOf(f.Info("model.norm.weight"), TensorDtype::kF32);
  wrong_shape.shape = {31};
  TensorSpec wrong_dtype = SpecOf(f.Info("lm_head.weight"), TensorDtype::kOther);
  EXPECT_OK(f.sink->Validate({good}));
  absl::Status st = f.sink->Validate({good, unknown, wrong_shape, wrong_dtype, good});
  EXPECT_THAT(st, StatusIs(absl::StatusCode::kInvalidArgument,
                           AllOf(HasSubstr("4 bad tensor"),
                                 HasSubstr("layers.9.mlp.up_proj.weight\": unknown"),
                                 HasSubstr("norm.weight\": shape [31], model has [32]"),
                                 HasSubstr("lm_head.weight\": unsupported dtype"),
                                 HasSubstr("listed twice"))));
  // Begin validates too and stages nothing.
  EXPECT_THAT(f.sink->Begin({good, unknown}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(f.sink->num_tensors(), 0u);
  EXPECT_EQ(f.env.allocator->Stats().allocated_bytes, 0u);
}

TEST(ModelWeightUpdateSinkTest, StagesAnyChunkingAndCommitsAtomically) {
  Fixture f;
  WeightInfo embed = f.Info("model.embed_tokens.weight");
  WeightInfo norm = f.Info("model.norm.weight");
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> dist(-2, 2);
  std::vector<float> embed_values(embed.NumElements()), norm_values(norm.NumElements());
  for (float& v : embed_values) v = dist(rng);
  for (float& v : norm_values) v = dist(rng);
  std::vector<uint16_t> embed_bf16 = ToBf16(embed_values);

  ASSERT_OK(f.sink->Begin({SpecOf(embed, TensorDtype::kBF16)}));
  ASSERT_OK(f.sink->Begin({SpecOf(norm, TensorDtype::kF32)}));  // a second call
  EXPECT_THAT(f.sink->Begin({SpecOf(norm, TensorDtype::kF32)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("already")));
  // Stage the bf16 tensor in random odd-sized chunks, in reverse order, with
  // one overlapping re-send.
  const size_t total = embed_bf16.size() * 2;
  const char* src = reinterpret_cast<const char*>(embed_bf16.data());
  std::vector<std::pair<size_t, size_t>> chunks;
  for (size_t off = 0; off < total;) {
    const size_t n = std::min<size_t>(1 + rng() % 333, total - off);
    chunks.push_back({off, n});
    off += n;
  }
  for (auto it = chunks.rbegin(); it != chunks.rend(); ++it) {
    ASSERT_OK(f.sink->Stage(embed.name, it->first, src + it->first, it->second));
  }
  ASSERT_OK(f.sink->Stage(embed.name, 5, src + 5, 100));
  // Half of the norm only: incomplete.
  const size_t norm_bytes = norm_values.size() * 4;
  ASSERT_OK(f.sink->Stage(norm.name, 0, norm_values.data(), norm_bytes / 2));
  EXPECT_THAT(f.sink->CheckComplete(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("model.norm.weight"), HasSubstr("64 of 128"))));
  EXPECT_THAT(f.sink->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(f.sink->Stage(norm.name, norm_bytes - 4, norm_values.data(), 8),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside")));
  EXPECT_THAT(f.sink->Stage("lm_head.weight", 0, norm_values.data(), 4),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not part")));
  // Nothing is live before the commit.
  EXPECT_EQ(embed.data[0], 0.0f);
  ASSERT_OK(f.sink->Stage(norm.name, norm_bytes / 2,
                          reinterpret_cast<const char*>(norm_values.data()) + norm_bytes / 2,
                          norm_bytes / 2));
  ASSERT_OK(f.sink->CheckComplete());
  EXPECT_EQ(norm.data[0], 0.0f);
  ASSERT_OK(f.sink->Commit());
  for (size_t i = 0; i < embed_values.size(); ++i) {
    ASSERT_EQ(embed.data[i], Bf16ToFloat(embed_bf16[i])) << i;
  }
  EXPECT_EQ(std::memcmp(norm.data, norm_values.data(), norm_bytes), 0);
  EXPECT_EQ(f.env.allocator->Stats().allocated_bytes, 0u);  // shadows freed
  EXPECT_EQ(f.sink->num_tensors(), 0u);
}

TEST(ModelWeightUpdateSinkTest, CommitMarksItsTensorsFreshAbortDoesNot) {
  Fixture f;
  const int64_t tensors = static_cast<int64_t>(f.weights->List().size());
  f.weights->MarkAllStale();  // as after a resume without backup
  ASSERT_EQ(f.weights->num_stale(), tensors);
  WeightInfo norm = f.Info("model.norm.weight");
  std::vector<float> values(norm.NumElements(), 1.5f);
  ASSERT_OK(f.sink->Begin({SpecOf(norm, TensorDtype::kF32)}));
  ASSERT_OK(f.sink->Stage(norm.name, 0, values.data(), values.size() * 4));
  f.sink->Abort();
  EXPECT_EQ(f.weights->num_stale(), tensors);
  ASSERT_OK(f.sink->Begin({SpecOf(norm, TensorDtype::kF32)}));
  ASSERT_OK(f.sink->Stage(norm.name, 0, values.data(), values.size() * 4));
  ASSERT_OK(f.sink->Commit());
  EXPECT_EQ(f.weights->num_stale(), tensors - 1);
  // Overwrite (the direct path) counts as well.
  WeightInfo embed = f.Info("model.embed_tokens.weight");
  std::vector<float> embed_values(embed.NumElements(), 0.25f);
  ASSERT_OK(f.weights->Overwrite(embed.name, TensorDtype::kF32, embed.shape, embed_values.data(),
                                 embed_values.size() * 4));
  EXPECT_EQ(f.weights->num_stale(), tensors - 2);
}

TEST(ModelWeightUpdateSinkTest, AbortLeavesWeightsUntouched) {
  Fixture f;
  WeightInfo norm = f.Info("model.norm.weight");
  std::vector<float> ones(norm.NumElements(), 1.0f);
  ASSERT_OK(f.sink->Begin({SpecOf(norm, TensorDtype::kF32)}));
  ASSERT_OK(f.sink->Stage(norm.name, 0, ones.data(), ones.size() * 4));
  EXPECT_GT(f.env.allocator->Stats().allocated_bytes, 0u);
  f.sink->Abort();
  EXPECT_EQ(norm.data[0], 0.0f);
  EXPECT_EQ(f.env.allocator->Stats().allocated_bytes, 0u);
  EXPECT_THAT(f.sink->Commit(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

// A float32 update of every tensor of a model big enough to have tensors of
// several pages; `seed` picks the values.
struct FullUpdate {
  std::vector<std::vector<float>> values;  // per tensor, in List() order
};

FullUpdate StageFullUpdate(ModelWeights* weights, ModelWeightUpdateSink* sink,
                           uint32_t seed) {
  FullUpdate u;
  std::vector<TensorSpec> specs;
  for (const WeightInfo& w : weights->List()) specs.push_back(SpecOf(w, TensorDtype::kF32));
  EXPECT_OK(sink->Begin(specs));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (const WeightInfo& w : weights->List()) {
    std::vector<float> v(w.NumElements());
    for (float& x : v) x = dist(rng);
    // Half through Stage, half through the zero-copy staging area.
    const size_t bytes = v.size() * 4, half = bytes / 2 / 4 * 4;
    EXPECT_OK(sink->Stage(w.name, 0, v.data(), half));
    void* area = sink->StagingArea(w.name, half, bytes - half);
    EXPECT_NE(area, nullptr);
    std::memcpy(area, reinterpret_cast<const char*>(v.data()) + half, bytes - half);
    EXPECT_OK(sink->MarkStaged(w.name, half, bytes - half));
    u.values.push_back(std::move(v));
  }
  return u;
}

std::unique_ptr<ModelWeights> BigWeights(ModelTestEnv* env) {
  TinyModelOptions o;
  o.layers = 1;
  o.hidden = 256;
  o.vocab = 1000;  // embed/lm_head: 1 MB each, not page-aligned in the pack
  return ModelWeights::Allocate(TinyModelConfig(o).value(), env->pool.get()).value();
}

TEST(ModelWeightUpdateSinkTest, CommitExchangesPagesAtFixedAddresses) {
  ModelTestEnv env;
  std::unique_ptr<ModelWeights> weights = BigWeights(&env);
  auto sink = ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()}).value();
  const std::vector<WeightInfo> before = weights->List();
  uint64_t reserved_after_round0 = 0;
  for (uint32_t round = 0; round < 3; ++round) {
    FullUpdate u = StageFullUpdate(weights.get(), sink.get(), 100 + round);
    ASSERT_OK(sink->CheckComplete());
    // Nothing live before the commit.
    if (round == 0) {
      EXPECT_EQ(weights->List()[0].data[0], 0.0f);
    }
    ASSERT_OK(sink->Commit());
    const std::vector<WeightInfo> after = weights->List();
    ASSERT_EQ(after.size(), before.size());
    size_t total = 0;
    for (size_t i = 0; i < after.size(); ++i) {
      EXPECT_EQ(after[i].data, before[i].data) << after[i].name;  // addresses fixed
      EXPECT_EQ(std::memcmp(after[i].data, u.values[i].data(), u.values[i].size() * 4), 0)
          << "round " << round << " " << after[i].name;
      total += u.values[i].size() * 4;
    }
    const auto& stats = sink->last_commit_stats();
    EXPECT_EQ(stats.exchange_failures, 0);
    EXPECT_GT(stats.exchanged_bytes, total / 2) << "round " << round;
    EXPECT_EQ(stats.exchanged_bytes + stats.copied_bytes, total);
    EXPECT_EQ(env.allocator->Stats().allocated_bytes, 0u);
    // The shadows (now holding the old pages) went back to the cache and
    // the next rounds reuse them instead of growing.
    if (round == 0) reserved_after_round0 = env.allocator->Stats().reserved_bytes;
    EXPECT_EQ(env.allocator->Stats().reserved_bytes, reserved_after_round0);
  }
}

TEST(ModelWeightUpdateSinkTest, LargeShadowsShareTheLiveOffsetWithin2MiB) {
  ModelTestEnv env;
  TinyModelOptions o;
  o.layers = 1;
  o.hidden = 1024;
  o.vocab = 8200;  // embed, lm_head: 32.03 MiB (>= kHugeAlignMinBytes); q: 4 MiB
  std::unique_ptr<ModelWeights> weights =
      ModelWeights::Allocate(TinyModelConfig(o).value(), env.pool.get()).value();
  auto sink = ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()}).value();
  const size_t huge = ModelWeightUpdateSink::kHugeAlignBytes;
  const size_t page = env.backend->exchange_page_bytes();
  auto offset = [](const void* p, size_t m) { return reinterpret_cast<uintptr_t>(p) % m; };
  // lm_head comes last in the pack: not at a 2 MiB boundary.
  const WeightInfo head = weights->Find("lm_head.weight").value();
  const WeightInfo q = weights->Find("model.layers.0.self_attn.q_proj.weight").value();
  ASSERT_NE(offset(head.data, huge), 0u);
  ASSERT_GE(head.NumElements() * 4, ModelWeightUpdateSink::kHugeAlignMinBytes);
  ASSERT_LT(q.NumElements() * 4, ModelWeightUpdateSink::kHugeAlignMinBytes);
  ASSERT_OK(sink->Begin({SpecOf(head, TensorDtype::kF32), SpecOf(q, TensorDtype::kF32)}));
  EXPECT_EQ(offset(sink->StagingArea(head.name, 0, head.NumElements() * 4), huge),
            offset(head.data, huge));
  EXPECT_EQ(offset(sink->StagingArea(q.name, 0, q.NumElements() * 4), page),
            offset(q.data, page));
  sink->Abort();
}

TEST(ModelWeightUpdateSinkTest, FailedExchangeFallsBackToCopy) {
  ModelTestEnv env;
  std::unique_ptr<ModelWeights> weights = BigWeights(&env);
  auto sink = ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()}).value();
  env.backend->FailExchangeStepForTesting(2);  // after the live pages moved out
  FullUpdate u = StageFullUpdate(weights.get(), sink.get(), 7);
  ASSERT_OK(sink->Commit());
  const std::vector<WeightInfo> after = weights->List();
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(std::memcmp(after[i].data, u.values[i].data(), u.values[i].size() * 4), 0)
        << after[i].name;
  }
  EXPECT_GT(sink->last_commit_stats().exchange_failures, 0);
  EXPECT_EQ(sink->last_commit_stats().exchanged_bytes, 0u);
}

TEST(ModelWeightUpdateSinkTest, AbortAfterZeroCopyStagingKeepsWeights) {
  ModelTestEnv env;
  std::unique_ptr<ModelWeights> weights = BigWeights(&env);
  auto sink = ModelWeightUpdateSink::Create({weights.get(), env.allocator.get()}).value();
  FullUpdate first = StageFullUpdate(weights.get(), sink.get(), 1);
  ASSERT_OK(sink->Commit());
  StageFullUpdate(weights.get(), sink.get(), 2);
  sink->Abort();
  const std::vector<WeightInfo> after = weights->List();
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(std::memcmp(after[i].data, first.values[i].data(), first.values[i].size() * 4),
              0)
        << after[i].name;
  }
  EXPECT_EQ(env.allocator->Stats().allocated_bytes, 0u);
}

TEST(WeightChecksumsTest, CrcOfStoredFloat32Bytes) {
  Fixture f;
  WeightInfo norm = f.Info("model.norm.weight");
  for (int64_t i = 0; i < norm.NumElements(); ++i) norm.data[i] = 0.5f * i;
  ASSERT_OK_AND_ASSIGN(auto all, ComputeWeightChecksums(*f.weights, {}));
  EXPECT_EQ(all.size(), f.weights->List().size());
  ASSERT_OK_AND_ASSIGN(auto one, ComputeWeightChecksums(*f.weights, {norm.name}));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].dtype, "float32");
  EXPECT_EQ(one[0].shape, norm.shape);
  std::vector<float> expected(norm.NumElements());
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = 0.5f * i;
  EXPECT_EQ(one[0].crc32c, weight_sync::Crc32c(expected.data(), expected.size() * 4));
  EXPECT_THAT(ComputeWeightChecksums(*f.weights, {"a", norm.name, "b"}),
              StatusIs(absl::StatusCode::kNotFound, AllOf(HasSubstr("\"a\""), HasSubstr("\"b\""))));
}

}  // namespace
}  // namespace engine
}  // namespace colo
