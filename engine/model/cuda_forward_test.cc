// CudaTransformerModel against the CPU TransformerModel on tiny models
// (GQA, q/k norm, biases, sliding-window layers; prefill, batched mixed
// prefill, decode), and a decode step captured in a CUDA graph against the
// eager path. Skips (with the reason) without a GPU.
#include "engine/model/cuda_forward.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <vector>

#include "engine/device/device_backend_factory.h"
#include "engine/model/simple_kv_cache.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

namespace kc = ::colo::kernels::cuda;

// A CUDA backend + pool, or a skip reason.
struct GpuEnv {
  std::unique_ptr<DeviceBackend> backend;
  std::unique_ptr<TaggedPool> pool;
  std::string skip_reason;

  GpuEnv() {
    absl::StatusOr<std::unique_ptr<DeviceBackend>> b = CreateDeviceBackend("cuda");
    if (!b.ok()) {
      skip_reason = b.status().ToString();
      return;
    }
    if (absl::Status s = kc::CudaDeviceAvailable(); !s.ok()) {
      skip_reason = s.ToString();
      return;
    }
    backend = std::move(*b);
    TaggedPool::Options po;
    po.backend = backend.get();
    pool = std::move(TaggedPool::Create(po)).value();
  }
};

// A device copy of a host KvCacheView (same slots and map), in the kv_cache tag.
class DeviceKv {
 public:
  static absl::StatusOr<std::unique_ptr<DeviceKv>> Mirror(const KvCacheView& host,
                                                          TaggedPool* pool) {
    auto kv = std::unique_ptr<DeviceKv>(new DeviceKv(pool));
    for (const kvcache::LayerKv& L : host.layers) {
      kvcache::LayerKv d = L;
      const size_t bytes = L.num_slots * L.SlotElements() * sizeof(float);
      for (void** p : {&d.k, &d.v}) {
        absl::StatusOr<void*> a = pool->Allocate(MemoryTag::kKvCache, bytes, "kv");
        if (!a.ok()) return a.status();
        kv->allocations_.push_back(*a);
        *p = *a;
      }
      kv->view_.layers.push_back(d);
    }
    if (host.full_to_swa != nullptr) {
      const size_t bytes = host.full_to_swa_size * sizeof(int32_t);
      absl::StatusOr<void*> a = pool->Allocate(MemoryTag::kKvCache, bytes, "full_to_swa");
      if (!a.ok()) return a.status();
      kv->allocations_.push_back(*a);
      if (absl::Status s = pool->backend()->CopyToDevice(*a, host.full_to_swa, bytes); !s.ok()) {
        return s;
      }
      kv->view_.full_to_swa = static_cast<const int32_t*>(*a);
      kv->view_.full_to_swa_size = host.full_to_swa_size;
    }
    return kv;
  }
  ~DeviceKv() {
    for (void* p : allocations_) (void)pool_->Free(p);
  }
  const KvCacheView& view() const { return view_; }

 private:
  explicit DeviceKv(TaggedPool* pool) : pool_(pool) {}
  TaggedPool* pool_;
  std::vector<void*> allocations_;
  KvCacheView view_;
};

std::unique_ptr<TransformerModel> LoadCpu(ModelTestEnv& env, const TinyModelOptions& o,
                                          const std::string& name) {
  const std::string d = TestDir(name);
  EXPECT_OK(WriteTinyModel(o, d));
  TransformerModel::Options mo;
  mo.model_dir = d;
  mo.weights_pool = env.pool.get();
  mo.allocator = env.allocator.get();
  return std::move(TransformerModel::Load(mo)).value();
}

void ExpectLogitsNear(const std::vector<float>& got, const std::vector<float>& want,
                      const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 1e-3f * (1 + std::fabs(want[i])))) {
      if (++bad <= 5) ADD_FAILURE() << where << " logit " << i << ": " << got[i] << " vs " << want[i];
    }
  }
  EXPECT_EQ(bad, 0) << where;
}

// Top-2 margin of a row of logits.
float Margin(const float* row, int64_t n) {
  std::vector<float> v(row, row + n);
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  return v[0] - v[1];
}

void CheckParity(const TinyModelOptions& o, const std::string& name) {
  GpuEnv gpu;
  if (gpu.pool == nullptr) GTEST_SKIP() << "no CUDA device: " << gpu.skip_reason;
  ModelTestEnv env;
  auto cpu = LoadCpu(env, o, name);
  CudaTransformerModel::Options co;
  co.device_pool = gpu.pool.get();
  co.max_tokens = 64;
  co.max_requests = 4;
  co.max_context = 64;
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co));
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 128, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto dkv, DeviceKv::Mirror(kv->view(), gpu.pool.get()));

  const int64_t V = cpu->config().vocab_size;
  std::vector<std::vector<int32_t>> seqs = {{3, 1, 4, 1, 5, 9, 2, 6, 5}, {7, 7, 2, 8, 1}};
  std::vector<std::vector<int32_t>> slots;
  for (size_t r = 0; r < seqs.size(); ++r) {
    ASSERT_OK_AND_ASSIGN(auto s, kv->AddSequence(40));
    slots.push_back(s);
  }
  std::vector<int64_t> cached(seqs.size(), 0);
  ForwardOptions fo;
  fo.return_logits = true;
  for (int step = 0; step < 12; ++step) {
    std::vector<ForwardRequest> batch(seqs.size());
    for (size_t r = 0; r < seqs.size(); ++r) {
      batch[r].cached_len = cached[r];
      batch[r].new_tokens = absl::MakeConstSpan(seqs[r].data() + cached[r],
                                                seqs[r].size() - cached[r]);
      batch[r].slots = slots[r];
    }
    ASSERT_OK_AND_ASSIGN(ForwardResult want, cpu->Forward(batch, kv->view(), fo));
    ASSERT_OK_AND_ASSIGN(ForwardResult got, dev->Forward(batch, dkv->view(), fo, stream.get()));
    ExpectLogitsNear(got.logits, want.logits, name + " step " + std::to_string(step));
    for (size_t r = 0; r < seqs.size(); ++r) {
      if (Margin(&want.logits[r * V], V) > 1e-3f) {
        EXPECT_EQ(got.tokens[r].token, want.tokens[r].token) << name << " step " << step;
      }
      EXPECT_NEAR(got.tokens[r].logprob, want.tokens[r].logprob, 1e-3f);
      cached[r] = seqs[r].size();
      seqs[r].push_back(want.tokens[r].token);  // both follow the CPU's tokens
    }
  }
}

TEST(CudaForwardTest, MatchesCpuLlamaGqa) {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 2;
  o.hidden = 96;
  o.heads = 6;
  o.kv_heads = 2;
  CheckParity(o, "cuda_fwd_llama");
}

TEST(CudaForwardTest, MatchesCpuQwen3QkNormTied) {
  TinyModelOptions o;
  o.arch = "qwen3";
  o.head_dim = 24;
  o.tie_embeddings = true;
  CheckParity(o, "cuda_fwd_qwen3");
}

TEST(CudaForwardTest, MatchesCpuQwen2Bias) {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.kv_heads = 1;
  CheckParity(o, "cuda_fwd_qwen2");
}

TEST(CudaForwardTest, MatchesCpuSlidingWindowLayers) {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 3;
  o.hidden = 96;
  o.heads = 6;
  o.kv_heads = 2;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention,
                   LayerType::kSlidingAttention};
  o.sliding_window = 4;
  CheckParity(o, "cuda_fwd_swa");
}

// A decode step captured once replays to the eager results at every step
// (positions, slots and tokens change through the input buffers).
TEST(CudaForwardTest, CapturedDecodeStepMatchesEager) {
  GpuEnv gpu;
  if (gpu.pool == nullptr) GTEST_SKIP() << "no CUDA device: " << gpu.skip_reason;
  ModelTestEnv env;
  TinyModelOptions o;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention};
  o.sliding_window = 5;
  auto cpu = LoadCpu(env, o, "cuda_fwd_graph");
  CudaTransformerModel::Options co;
  co.device_pool = gpu.pool.get();
  co.max_tokens = 16;
  co.max_requests = 1;
  co.max_context = 64;
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co));
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 128, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto eager_kv, DeviceKv::Mirror(kv->view(), gpu.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto graph_kv, DeviceKv::Mirror(kv->view(), gpu.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto slots, kv->AddSequence(40));

  std::vector<int32_t> seq = {5, 4, 3, 2, 1, 9};
  // Prefill both caches eagerly.
  ForwardRequest r;
  r.new_tokens = seq;
  r.slots = slots;
  std::vector<ForwardRequest> batch = {r};
  ASSERT_OK_AND_ASSIGN(ForwardResult e0, dev->Forward(batch, eager_kv->view(), {}, stream.get()));
  ASSERT_OK_AND_ASSIGN(ForwardResult g0, dev->Forward(batch, graph_kv->view(), {}, stream.get()));
  ASSERT_EQ(e0.tokens[0].token, g0.tokens[0].token);
  seq.push_back(e0.tokens[0].token);

  kc::CudaGraph graph;
  CudaTransformerModel::StepShape shape;
  for (int step = 0; step < 8; ++step) {
    batch[0].cached_len = static_cast<int64_t>(seq.size()) - 1;
    batch[0].new_tokens = absl::MakeConstSpan(&seq.back(), 1);
    ASSERT_OK_AND_ASSIGN(ForwardResult eager,
                         dev->Forward(batch, eager_kv->view(), {}, stream.get()));
    ASSERT_OK_AND_ASSIGN(shape, dev->PrepareInputs(batch, graph_kv->view(), stream.get()));
    if (!graph.valid()) {
      ASSERT_OK_AND_ASSIGN(graph, kc::CudaGraph::Capture(stream.get(), [&] {
                             return dev->EnqueueStep(shape, graph_kv->view(), stream.get());
                           }));
    }
    ASSERT_OK(graph.Replay(stream.get()));
    ASSERT_OK_AND_ASSIGN(auto replayed, dev->ReadGreedy(shape, stream.get()));
    EXPECT_EQ(replayed[0].token, eager.tokens[0].token) << "step " << step;
    EXPECT_EQ(replayed[0].logprob, eager.tokens[0].logprob) << "step " << step;
    seq.push_back(eager.tokens[0].token);
  }
}

TEST(CudaForwardTest, RejectsBatchesBeyondTheLimits) {
  GpuEnv gpu;
  if (gpu.pool == nullptr) GTEST_SKIP() << "no CUDA device: " << gpu.skip_reason;
  ModelTestEnv env;
  auto cpu = LoadCpu(env, TinyModelOptions(), "cuda_fwd_limits");
  CudaTransformerModel::Options co;
  co.device_pool = gpu.pool.get();
  co.max_tokens = 4;
  co.max_requests = 1;
  co.max_context = 8;
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co));
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 64, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto dkv, DeviceKv::Mirror(kv->view(), gpu.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto slots, kv->AddSequence(16));
  std::vector<int32_t> tokens = {1, 2, 3, 4, 5};
  ForwardRequest r;
  r.new_tokens = tokens;  // 5 > max_tokens
  r.slots = slots;
  std::vector<ForwardRequest> batch = {r};
  EXPECT_THAT(dev->Forward(batch, dkv->view(), {}, stream.get()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<int32_t> bad = {1, 1 << 20};
  batch[0].new_tokens = bad;
  EXPECT_THAT(dev->Forward(batch, dkv->view(), {}, stream.get()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CudaForwardTest, NeedsACudaPool) {
  ModelTestEnv env;  // CPU backend pool
  auto cpu = LoadCpu(env, TinyModelOptions(), "cuda_fwd_cpu_pool");
  CudaTransformerModel::Options co;
  co.device_pool = env.pool.get();
  EXPECT_THAT(CudaTransformerModel::Create(cpu->weights(), co),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace engine
}  // namespace colo
