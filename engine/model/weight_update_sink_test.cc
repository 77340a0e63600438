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
