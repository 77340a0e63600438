// PackStep's packing of a batch for the CUDA forward, on the CPU (CI): the
// live page tables (from pages, or derived from page-structured slots),
// token bookkeeping, prefill tiles vs decode items, sampling plans, graph
// padding onto the padding page, the upload size, and every validation error.
#include "engine/model/cuda_step_inputs.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kvcache/kv_layout.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

namespace kc = ::colo::kernels::cuda;

ModelConfig Config(bool sliding = false) {
  ModelConfig c;
  c.vocab_size = 100;
  c.hidden_size = 64;
  c.num_layers = 2;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.layer_types = {sliding ? LayerType::kSlidingAttention : LayerType::kFullAttention,
                   LayerType::kFullAttention};
  c.sliding_window = sliding ? 4 : 0;
  return c;
}

// A view over fake (never dereferenced) device pointers.
KvCacheView View(const ModelConfig& c, int32_t page_size, kc::DType dtype,
                 int64_t slots = 1024) {
  KvCacheView v;
  static char fake[16];
  for (int i = 0; i < c.num_layers; ++i) {
    kvcache::LayerKv L;
    L.k = fake;
    L.v = fake + 8;
    L.num_slots = slots;
    L.num_kv_heads = c.num_kv_heads;
    L.head_dim = c.head_dim;
    L.dtype = static_cast<kvcache::KvDtype>(dtype);
    L.sliding = c.layer_types[i] == LayerType::kSlidingAttention;
    v.layers.push_back(L);
  }
  if (c.HasSlidingLayers()) {
    v.full_to_swa = reinterpret_cast<const int32_t*>(fake);
    v.full_to_swa_size = slots;
  }
  v.page_size = page_size;
  return v;
}

StepLimits Limits(int32_t page_size) {
  StepLimits l;
  l.max_tokens = 64;
  l.max_requests = 8;
  l.max_context = 100;
  l.page_size = page_size;
  return l;
}

struct Packed {
  std::vector<char> bytes;
  StepLayout layout;
  template <typename T>
  const T* At(size_t offset) const {
    return reinterpret_cast<const T*>(bytes.data() + offset);
  }
};

TEST(CudaStepInputsTest, LayoutIsAlignedAndPagesComeLast) {
  const StepLayout l = StepLayout::For(Limits(16));
  EXPECT_EQ(l.tokens % 256, 0u);
  EXPECT_EQ(l.params % 8, 0u);
  EXPECT_EQ(l.max_pages, 7);  // ceil(100 / 16)
  EXPECT_GT(l.pages, l.params);
  EXPECT_EQ(l.total, l.pages + 8 * 7 * 4);
}

TEST(CudaStepInputsTest, PacksAMixedBatchWithPages) {
  const ModelConfig c = Config();
  const KvCacheView kv = View(c, 4, kc::DType::kBFloat16);
  const StepLimits limits = Limits(4);
  Packed out;
  out.layout = StepLayout::For(limits);
  out.bytes.assign(out.layout.total, 0);
  // r0: prefill of 6 tokens (pages 3, 9); r1: decode at position 9 (pages 5, 6, 2);
  // r2: extend of 3 tokens after 2 cached (page 7, 8).
  const std::vector<int32_t> t0 = {1, 2, 3, 4, 5, 6}, t1 = {42}, t2 = {7, 8, 9};
  const std::vector<int32_t> p0 = {3, 9}, p1 = {5, 6, 2}, p2 = {7, 8};
  std::vector<ForwardRequest> batch(3);
  batch[0].new_tokens = t0;
  batch[0].pages = p0;
  batch[1].cached_len = 9;
  batch[1].new_tokens = t1;
  batch[1].pages = p1;
  batch[1].sampling.temperature = 0.5f;
  batch[1].sampling.seed = 77;
  batch[1].sample_step = 4;
  batch[2].cached_len = 2;
  batch[2].new_tokens = t2;
  batch[2].pages = p2;
  ASSERT_OK_AND_ASSIGN(StepPlan plan,
                       PackStep(batch, kv, c, kc::DType::kBFloat16, limits, 0, 3, out.bytes.data()));
  EXPECT_EQ(plan.num_tokens, 10);
  EXPECT_EQ(plan.num_requests, 3);
  EXPECT_EQ(plan.real_requests, 3);
  EXPECT_FALSE(plan.all_decode);
  EXPECT_EQ(plan.num_decode, 1);
  EXPECT_EQ(plan.max_kv_len, 10);
  EXPECT_EQ(plan.decode_splits, 3);
  const int32_t* tok = out.At<int32_t>(out.layout.tokens);
  const int32_t* pos = out.At<int32_t>(out.layout.positions);
  const int32_t* treq = out.At<int32_t>(out.layout.token_req);
  EXPECT_EQ(std::vector<int32_t>(tok, tok + 10),
            (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 42, 7, 8, 9}));
  EXPECT_EQ(std::vector<int32_t>(pos, pos + 10),
            (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 9, 2, 3, 4}));
  EXPECT_EQ(std::vector<int32_t>(treq, treq + 10),
            (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 1, 2, 2, 2}));
  const int32_t* last = out.At<int32_t>(out.layout.last_index);
  EXPECT_EQ(std::vector<int32_t>(last, last + 3), (std::vector<int32_t>{5, 6, 9}));
  const int32_t* begin = out.At<int32_t>(out.layout.page_begin);
  EXPECT_EQ(std::vector<int32_t>(begin, begin + 4), (std::vector<int32_t>{0, 2, 5, 7}));
  const int32_t* pages = out.At<int32_t>(out.layout.pages);
  EXPECT_EQ(std::vector<int32_t>(pages, pages + 7), (std::vector<int32_t>{3, 9, 5, 6, 2, 7, 8}));
  EXPECT_EQ(plan.upload_bytes, out.layout.pages + 7 * 4);
  EXPECT_EQ(out.At<int32_t>(out.layout.decode_tokens)[0], 6);
  // Tiles: heads 8 / kv 2 -> 4 heads per block, 4 tokens per tile.
  ASSERT_EQ(plan.num_tiles, 3);  // r0: 4 + 2 tokens; r2: 3 tokens
  const kc::PrefillTile* tiles = out.At<kc::PrefillTile>(out.layout.tiles);
  EXPECT_EQ(tiles[0].req, 0);
  EXPECT_EQ(tiles[0].num_tokens, 4);
  EXPECT_EQ(tiles[1].token_begin, 4);
  EXPECT_EQ(tiles[1].num_tokens, 2);
  EXPECT_EQ(tiles[2].req, 2);
  EXPECT_EQ(tiles[2].token_begin, 7);
  const kc::DeviceSamplingParams* params = out.At<kc::DeviceSamplingParams>(out.layout.params);
  EXPECT_EQ(params[0].mode, kc::kSampleGreedy);
  EXPECT_EQ(params[1].mode, kc::kSampleTemperature);
  EXPECT_EQ(params[1].seed, 77u);
  EXPECT_EQ(params[1].step, 4u);
}

TEST(CudaStepInputsTest, PagesDerivedFromPageStructuredSlots) {
  const ModelConfig c = Config();
  const KvCacheView kv = View(c, 4, kc::DType::kFloat32);
  const StepLimits limits = Limits(4);
  std::vector<char> bytes(StepLayout::For(limits).total);
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  std::vector<int32_t> slots = {12, 13, 14, 15, 32};  // pages 3, 8
  std::vector<ForwardRequest> batch(1);
  batch[0].new_tokens = tokens;
  batch[0].slots = slots;
  ASSERT_OK_AND_ASSIGN(StepPlan plan,
                       PackStep(batch, kv, c, kc::DType::kFloat32, limits, 0, 1, bytes.data()));
  const StepLayout l = StepLayout::For(limits);
  const int32_t* pages = reinterpret_cast<const int32_t*>(bytes.data() + l.pages);
  EXPECT_EQ(pages[0], 3);
  EXPECT_EQ(pages[1], 8);
  EXPECT_EQ(plan.upload_bytes, l.pages + 8);
  // Slots that do not follow a page are refused.
  slots[2] = 99;
  EXPECT_THAT(PackStep(batch, kv, c, kc::DType::kFloat32, limits, 0, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("follow its page")));
  slots = {13, 14, 15, 16, 32};  // does not start a page
  EXPECT_THAT(PackStep(batch, kv, c, kc::DType::kFloat32, limits, 0, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("start of a page")));
}

TEST(CudaStepInputsTest, PadsADecodeBatchOntoThePaddingPage) {
  const ModelConfig c = Config(/*sliding=*/true);
  const KvCacheView kv = View(c, 4, kc::DType::kBFloat16);
  const StepLimits limits = Limits(4);
  const StepLayout l = StepLayout::For(limits);
  std::vector<char> bytes(l.total);
  const std::vector<int32_t> t0 = {5}, t1 = {6}, p0 = {2}, p1 = {4, 1};
  std::vector<ForwardRequest> batch(2);
  batch[0].new_tokens = t0;
  batch[0].cached_len = 3;
  batch[0].pages = p0;
  batch[1].new_tokens = t1;
  batch[1].cached_len = 6;
  batch[1].pages = p1;
  batch[1].sampling.temperature = 1.0f;
  ASSERT_OK_AND_ASSIGN(StepPlan plan,
                       PackStep(batch, kv, c, kc::DType::kBFloat16, limits, 4, 2, bytes.data()));
  EXPECT_TRUE(plan.all_decode);
  EXPECT_EQ(plan.num_requests, 4);
  EXPECT_EQ(plan.real_requests, 2);
  EXPECT_EQ(plan.num_tokens, 4);
  EXPECT_EQ(plan.num_decode, 4);
  EXPECT_EQ(plan.num_tiles, 0);
  auto ints = [&](size_t off, int n) {
    const int32_t* p = reinterpret_cast<const int32_t*>(bytes.data() + off);
    return std::vector<int32_t>(p, p + n);
  };
  EXPECT_EQ(ints(l.tokens, 4), (std::vector<int32_t>{5, 6, 0, 0}));
  EXPECT_EQ(ints(l.positions, 4), (std::vector<int32_t>{3, 6, 0, 0}));
  EXPECT_EQ(ints(l.token_req, 4), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(ints(l.last_index, 4), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(ints(l.decode_tokens, 4), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(ints(l.page_begin, 5), (std::vector<int32_t>{0, 1, 3, 4, 5}));
  EXPECT_EQ(ints(l.pages, 5), (std::vector<int32_t>{2, 4, 1, kvcache::kPaddingPage,
                                                     kvcache::kPaddingPage}));
  const auto* params = reinterpret_cast<const kc::DeviceSamplingParams*>(bytes.data() + l.params);
  EXPECT_EQ(params[1].mode, kc::kSampleTemperature);
  EXPECT_EQ(params[2].mode, kc::kSampleGreedy);
  EXPECT_EQ(params[3].mode, kc::kSampleGreedy);
  // Padding needs a decode-only batch no larger than the bucket.
  const std::vector<int32_t> two = {1, 2};
  batch[1].new_tokens = two;
  EXPECT_THAT(PackStep(batch, kv, c, kc::DType::kBFloat16, limits, 4, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  batch[1].new_tokens = t1;
  EXPECT_THAT(PackStep(batch, kv, c, kc::DType::kBFloat16, limits, 1, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CudaStepInputsTest, RejectsBadBatches) {
  const ModelConfig c = Config(/*sliding=*/true);
  const StepLimits limits = Limits(4);
  std::vector<char> bytes(StepLayout::For(limits).total);
  const KvCacheView kv = View(c, 4, kc::DType::kBFloat16, /*slots=*/64);
  const std::vector<int32_t> one = {1}, bad_token = {100}, pages = {3}, far = {16};
  std::vector<ForwardRequest> batch(1);
  batch[0].new_tokens = one;
  batch[0].pages = pages;
  ASSERT_OK(PackStep(batch, kv, c, kc::DType::kBFloat16, limits, 0, 1, bytes.data()).status());
  auto expect_bad = [&](const std::string& what) {
    EXPECT_THAT(PackStep(batch, kv, c, kc::DType::kBFloat16, limits, 0, 1, bytes.data()),
                StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr(what)));
  };
  batch[0].new_tokens = bad_token;
  expect_bad("vocabulary");
  batch[0].new_tokens = one;
  batch[0].pages = far;  // slots 64..67 of a 64-slot pool
  expect_bad("outside the KV pool");
  batch[0].pages = pages;
  batch[0].cached_len = 100;  // 101 positions > max_context
  expect_bad("max_context");
  batch[0].cached_len = 4;  // 5 positions need 2 pages
  expect_bad("pages for 5 positions");
  batch[0].cached_len = 0;
  EXPECT_THAT(PackStep(batch, kv, c, kc::DType::kFloat16, limits, 0, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("float16")));
  KvCacheView wrong_page = kv;
  wrong_page.page_size = 8;
  EXPECT_THAT(PackStep(batch, wrong_page, c, kc::DType::kBFloat16, limits, 0, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("page_size")));
  std::vector<ForwardRequest> many(9, batch[0]);
  EXPECT_THAT(PackStep(many, kv, c, kc::DType::kBFloat16, limits, 0, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, testing::HasSubstr("max_requests")));
  EXPECT_THAT(PackStep({}, kv, c, kc::DType::kBFloat16, limits, 0, 1, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::engine
