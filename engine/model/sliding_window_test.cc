// Sliding-window layers: the window changes the answer, and colo's paged,
// batched forward (SWA pool through a full->SWA slot map) equals a direct
// unpaged, unbatched attention computation.
#include <cmath>

#include "engine/model/forward.h"
#include "engine/model/reference_forward.h"
#include "engine/model/simple_kv_cache.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

using ::testing::HasSubstr;

std::vector<float> LastLogits(TransformerModel& model, TaggedPool* pool,
                              const std::vector<int32_t>& tokens, int64_t chunk) {
  auto kv = std::move(SimpleKvCache::Create(model.config(), 128, pool)).value();
  auto slots = std::move(kv->AddSequence(tokens.size())).value();
  ForwardResult res;
  for (int64_t cached = 0; cached < static_cast<int64_t>(tokens.size());) {
    int64_t n = std::min<int64_t>(chunk, tokens.size() - cached);
    ForwardRequest r;
    r.cached_len = cached;
    r.new_tokens = absl::MakeConstSpan(tokens.data() + cached, n);
    r.slots = slots;
    ForwardOptions fo;
    fo.return_logits = true;
    std::vector<ForwardRequest> batch = {r};
    res = std::move(model.Forward(batch, kv->view(), fo)).value();
    cached += n;
  }
  return res.logits;
}

std::unique_ptr<TransformerModel> Load(ModelTestEnv& env, const std::string& name,
                                       std::vector<LayerType> types, int64_t window) {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 3;
  o.seed = 5;  // same weights for both models
  o.layer_types = types;
  o.sliding_window = window;
  const std::string d = TestDir(name);
  EXPECT_OK(WriteTinyModel(o, d));
  TransformerModel::Options mo;
  mo.model_dir = d;
  mo.weights_pool = env.pool.get();
  mo.allocator = env.allocator.get();
  return std::move(TransformerModel::Load(mo)).value();
}

TEST(SlidingWindowTest, WindowChangesAnswerAndMatchesDirectAttention) {
  ModelTestEnv env;
  using LT = LayerType;
  auto full = Load(env, "swa_full", {LT::kFullAttention, LT::kFullAttention, LT::kFullAttention}, 0);
  auto mixed = Load(env, "swa_mixed", {LT::kSlidingAttention, LT::kFullAttention, LT::kSlidingAttention}, 4);
  std::vector<int32_t> tokens;
  for (int i = 0; i < 20; ++i) tokens.push_back((i * 37 + 11) % 256);
  auto ref_mixed = ReferenceForward(mixed->weights(), tokens).back();
  for (int64_t chunk : {20, 3, 1}) {
    auto got = LastLogits(*mixed, env.pool.get(), tokens, chunk);
    for (size_t v = 0; v < got.size(); ++v) {
      ASSERT_NEAR(got[v], ref_mixed[v], 2e-3 * (1 + std::abs(ref_mixed[v])))
          << "chunk " << chunk << " vocab " << v;
    }
  }
  auto got_full = LastLogits(*full, env.pool.get(), tokens, 20);
  double max_diff = 0;
  for (size_t v = 0; v < got_full.size(); ++v) {
    max_diff = std::max(max_diff, std::abs(got_full[v] - ref_mixed[v]));
  }
  EXPECT_GT(max_diff, 0.1) << "the window did not change the logits";
}

TEST(SlidingWindowTest, UnmappedSwaSlotInsideWindowIsRejected) {
  ModelTestEnv env;
  using LT = LayerType;
  auto model = Load(env, "swa_unmapped", {LT::kSlidingAttention, LT::kFullAttention, LT::kFullAttention}, 4);
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(model->config(), 64, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto slots, kv->AddSequence(8));
  KvCacheView view = kv->view();
  std::vector<int32_t> map(view.full_to_swa, view.full_to_swa + view.full_to_swa_size);
  map[slots[1]] = kvcache::kNoSwaSlot;
  view.full_to_swa = map.data();
  std::vector<int32_t> tokens = {1, 2, 3};
  ForwardRequest r;
  r.new_tokens = tokens;
  r.slots = slots;
  std::vector<ForwardRequest> batch = {r};
  EXPECT_THAT(model->Forward(batch, view),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SWA slot -1")));
  // Position 1 outside the window of a later decode is never read: fine.
  map[slots[1]] = kv->view().full_to_swa[slots[1]];
  ASSERT_OK(model->Forward(batch, view).status());
  std::vector<int32_t> more = {4, 5, 6, 7};
  batch[0].cached_len = 3;
  batch[0].new_tokens = absl::MakeConstSpan(more.data(), 3);
  ASSERT_OK(model->Forward(batch, view).status());  // positions 3..5
  map[slots[1]] = kvcache::kNoSwaSlot;             // 1 now outside window of 6
  batch[0].cached_len = 6;
  batch[0].new_tokens = absl::MakeConstSpan(more.data() + 3, 1);
  EXPECT_OK(model->Forward(batch, view).status());
}

}  // namespace
}  // namespace engine
}  // namespace colo
