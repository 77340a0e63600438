// CudaTransformerModel against the CPU TransformerModel (float32) on tiny
// models (GQA, q/k norm, biases, sliding-window layers; prefill, batched
// mixed prefill + decode, page lists and page-structured slots) in float32,
// float16 and bfloat16 with their own and an fp8 KV cache; device sampling
// with the host fallback; weight upload/download and partial uploads; a
// decode step captured in a CUDA graph against the eager path. Skips without
// a GPU (fails under COLO_REQUIRE_GPU=1).
#include "engine/model/cuda_forward.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/device/device_backend_factory.h"
#include "engine/model/simple_kv_cache.h"
#include "engine/model/test_env.h"
#include "engine/model/tiny_model.h"
#include "gtest/gtest.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "tests/util/gpu_required.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

namespace kc = ::colo::kernels::cuda;
using kc::DType;

// A CUDA backend + pool, or the reason there is none.
struct GpuEnv {
  std::unique_ptr<DeviceBackend> backend;
  std::unique_ptr<TaggedPool> pool;
  absl::Status status;

  GpuEnv() {
    absl::StatusOr<std::unique_ptr<DeviceBackend>> b = CreateDeviceBackend("cuda");
    if (!b.ok()) {
      status = b.status();
      return;
    }
    status = kc::CudaDeviceAvailable((*b)->device());
    if (!status.ok()) return;
    backend = std::move(*b);
    TaggedPool::Options po;
    po.backend = backend.get();
    pool = std::move(TaggedPool::Create(po)).value();
  }
};

#define SKIP_WITHOUT_GPU(env) COLO_SKIP_OR_FAIL_WITHOUT_GPU((env).status)

// A device KV view shaped like a host one (same slots and map), with
// `dtype` pools in the kv_cache tag.
class DeviceKv {
 public:
  static absl::StatusOr<std::unique_ptr<DeviceKv>> Mirror(const KvCacheView& host,
                                                          TaggedPool* pool, DType dtype,
                                                          int32_t page_size) {
    auto kv = std::unique_ptr<DeviceKv>(new DeviceKv(pool));
    for (const kvcache::LayerKv& L : host.layers) {
      kvcache::LayerKv d = L;
      d.dtype = static_cast<kvcache::KvDtype>(dtype);
      const size_t bytes = L.num_slots * L.SlotElements() * kc::DTypeBytes(dtype);
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
      // Ordered on a stream from pinned memory (not the legacy stream).
      absl::StatusOr<kc::CudaStream> stream = kc::CudaStream::Create();
      if (!stream.ok()) return stream.status();
      if (absl::Status s = kc::StreamCopyToDevice(*a, host.full_to_swa, bytes, stream->get());
          !s.ok()) {
        return s;
      }
      kv->view_.full_to_swa = static_cast<const int32_t*>(*a);
      kv->view_.full_to_swa_size = host.full_to_swa_size;
    }
    kv->view_.page_size = page_size;
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

CudaTransformerModel::Options ModelOptions(TaggedPool* pool, DType dtype, DType kv,
                                           int64_t max_tokens, int64_t max_requests,
                                           int64_t max_context, int32_t page_size = 1) {
  CudaTransformerModel::Options co;
  co.device_pool = pool;
  co.dtype = dtype;
  co.kv_dtype = kv;
  co.max_tokens = max_tokens;
  co.max_requests = max_requests;
  co.max_context = max_context;
  co.page_size = page_size;
  return co;
}

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

// Logit tolerance of a device dtype against the float32 CPU forward.
struct Tolerance {
  float atol;
  float rtol;
};
Tolerance TolFor(DType dtype, DType kv) {
  Tolerance t{1e-3f, 1e-3f};
  if (dtype == DType::kFloat16) t = {3e-2f, 2e-2f};
  if (dtype == DType::kBFloat16) t = {1e-1f, 5e-2f};
  if (kv == DType::kFp8E4M3) t = {t.atol + 2.5e-1f, t.rtol + 1e-1f};
  return t;
}

void ExpectLogitsNear(const std::vector<float>& got, const std::vector<float>& want,
                      Tolerance tol, const std::string& where) {
  ASSERT_EQ(got.size(), want.size()) << where;
  int bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= tol.atol + tol.rtol * std::fabs(want[i]))) {
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

struct ParityCase {
  DType dtype = DType::kFloat32;
  DType kv = DType::kFloat32;
  int32_t page_size = 8;
  bool pages = false;  // give page lists instead of slots
};

void CheckParity(const TinyModelOptions& o, const std::string& name, const ParityCase& pc) {
  GpuEnv gpu;
  SKIP_WITHOUT_GPU(gpu);
  SCOPED_TRACE(::testing::Message() << name << " " << kc::DTypeName(pc.dtype) << "/"
                                    << kc::DTypeName(pc.kv) << " P" << pc.page_size
                                    << (pc.pages ? " pages" : " slots"));
  ModelTestEnv env;
  auto cpu = LoadCpu(env, o, name);
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  const CudaTransformerModel::Options co =
      ModelOptions(gpu.pool.get(), pc.dtype, pc.kv, 64, 4, 64, pc.page_size);
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 256, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto dkv, DeviceKv::Mirror(kv->view(), gpu.pool.get(), pc.kv,
                                                  pc.page_size));

  const int64_t V = cpu->config().vocab_size;
  std::vector<std::vector<int32_t>> seqs = {{3, 1, 4, 1, 5, 9, 2, 6, 5}, {7, 7, 2, 8, 1}};
  std::vector<std::vector<int32_t>> slots, pages;
  for (size_t r = 0; r < seqs.size(); ++r) {
    // Capacities that are multiples of the page size keep the contiguous
    // slots of SimpleKvCache page-structured.
    ASSERT_OK_AND_ASSIGN(auto s, kv->AddSequence(48));
    std::vector<int32_t> p;
    for (size_t i = 0; i < s.size(); i += pc.page_size) p.push_back(s[i] / pc.page_size);
    slots.push_back(s);
    pages.push_back(p);
  }
  std::vector<int64_t> cached(seqs.size(), 0);
  ForwardOptions fo;
  fo.return_logits = true;
  const Tolerance tol = TolFor(pc.dtype, pc.kv);
  int compared = 0;
  for (int step = 0; step < 12; ++step) {
    std::vector<ForwardRequest> batch(seqs.size()), dbatch;
    for (size_t r = 0; r < seqs.size(); ++r) {
      batch[r].cached_len = cached[r];
      batch[r].new_tokens =
          absl::MakeConstSpan(seqs[r].data() + cached[r], seqs[r].size() - cached[r]);
      batch[r].slots = slots[r];
    }
    dbatch = batch;
    if (pc.pages) {
      for (size_t r = 0; r < seqs.size(); ++r) {
        dbatch[r].slots = {};
        dbatch[r].pages = pages[r];
      }
    }
    ASSERT_OK_AND_ASSIGN(ForwardResult want, cpu->Forward(batch, kv->view(), fo));
    ASSERT_OK_AND_ASSIGN(ForwardResult got, dev->Forward(dbatch, dkv->view(), fo, stream.get()));
    ExpectLogitsNear(got.logits, want.logits, tol, "step " + std::to_string(step));
    for (size_t r = 0; r < seqs.size(); ++r) {
      if (Margin(&want.logits[r * V], V) > 3 * (tol.atol + tol.rtol * 4)) {
        EXPECT_EQ(got.tokens[r].token, want.tokens[r].token) << "step " << step;
        ++compared;
      }
      EXPECT_NEAR(got.tokens[r].logprob, want.tokens[r].logprob, 2 * tol.atol + 1e-3f);
      cached[r] = seqs[r].size();
      seqs[r].push_back(want.tokens[r].token);  // both follow the CPU's tokens
    }
  }
  EXPECT_GT(compared, 0) << "no token had a clear margin: the comparison proved nothing";
}

TinyModelOptions Llama() {
  TinyModelOptions o;
  o.arch = "llama";
  o.layers = 2;
  o.hidden = 96;
  o.heads = 6;
  o.kv_heads = 2;
  return o;
}

TEST(CudaForwardTest, MatchesCpuLlamaGqaInEveryDtype) {
  for (DType d : {DType::kFloat32, DType::kFloat16, DType::kBFloat16}) {
    CheckParity(Llama(), "cuda_fwd_llama", {d, d, 8, false});
  }
}

TEST(CudaForwardTest, MatchesCpuWithPageListsAndPageSizeOne) {
  CheckParity(Llama(), "cuda_fwd_pages", {DType::kBFloat16, DType::kBFloat16, 16, true});
  CheckParity(Llama(), "cuda_fwd_p1", {DType::kFloat32, DType::kFloat32, 1, false});
}

TEST(CudaForwardTest, MatchesCpuWithAnFp8KvCache) {
  CheckParity(Llama(), "cuda_fwd_fp8", {DType::kBFloat16, DType::kFp8E4M3, 8, true});
}

TEST(CudaForwardTest, MatchesCpuQwen3QkNormTied) {
  TinyModelOptions o;
  o.arch = "qwen3";
  o.head_dim = 24;
  o.tie_embeddings = true;
  CheckParity(o, "cuda_fwd_qwen3", {DType::kFloat32, DType::kFloat32, 8, false});
  CheckParity(o, "cuda_fwd_qwen3_bf16", {DType::kBFloat16, DType::kBFloat16, 8, true});
}

TEST(CudaForwardTest, MatchesCpuQwen2Bias) {
  TinyModelOptions o;
  o.arch = "qwen2";
  o.kv_heads = 1;
  CheckParity(o, "cuda_fwd_qwen2", {DType::kFloat32, DType::kFloat32, 8, false});
  CheckParity(o, "cuda_fwd_qwen2_fp16", {DType::kFloat16, DType::kFloat16, 8, false});
}

TEST(CudaForwardTest, MatchesCpuSlidingWindowLayers) {
  TinyModelOptions o = Llama();
  o.layers = 3;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention,
                   LayerType::kSlidingAttention};
  o.sliding_window = 4;
  CheckParity(o, "cuda_fwd_swa", {DType::kFloat32, DType::kFloat32, 8, false});
  CheckParity(o, "cuda_fwd_swa_bf16", {DType::kBFloat16, DType::kBFloat16, 8, true});
}

// Sampled requests (temperature, top-k, top-p, seeds) sample on the device
// like the CPU sampler over the same (float32) logits; a top-k beyond the
// device's candidates falls back to the host sampler.
TEST(CudaForwardTest, DeviceSamplingMatchesCpuWithHostFallback) {
  GpuEnv gpu;
  SKIP_WITHOUT_GPU(gpu);
  ModelTestEnv env;
  TinyModelOptions o = Llama();
  o.vocab = 4096;
  auto cpu = LoadCpu(env, o, "cuda_fwd_sampling");
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  const CudaTransformerModel::Options co =
      ModelOptions(gpu.pool.get(), DType::kFloat32, DType::kFloat32, 64, 8, 64);
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 512, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto dkv, DeviceKv::Mirror(kv->view(), gpu.pool.get(), DType::kFloat32, 1));
  std::vector<std::vector<int32_t>> prompts, slots;
  std::vector<ForwardRequest> batch(6);
  for (size_t r = 0; r < batch.size(); ++r) {
    prompts.push_back(TinyPrompt(static_cast<int>(r), 5 + static_cast<int>(r), o.vocab));
    ASSERT_OK_AND_ASSIGN(auto s, kv->AddSequence(16));
    slots.push_back(s);
  }
  for (size_t r = 0; r < batch.size(); ++r) {
    batch[r].new_tokens = prompts[r];
    batch[r].slots = slots[r];
    batch[r].sampling.temperature = 0.9f;
    batch[r].sampling.seed = 100 + r;
    batch[r].sample_step = r;
  }
  batch[1].sampling.top_k = 20;
  batch[2].sampling.top_p = 0.8f;
  batch[3].sampling.top_k = 50;
  batch[3].sampling.top_p = 0.5f;
  batch[4].sampling.top_k = 3000;  // > kMaxDeviceCandidates: sampled on the host
  batch[5].sampling.temperature = 0.0f;
  ForwardOptions fo;
  fo.return_logits = true;
  ASSERT_OK_AND_ASSIGN(ForwardResult want, cpu->Forward(batch, kv->view(), fo));
  ASSERT_OK_AND_ASSIGN(ForwardResult got, dev->Forward(batch, dkv->view(), fo, stream.get()));
  for (size_t r = 0; r < batch.size(); ++r) {
    // Same semantics on float32 logits equal within rounding: the same
    // token unless a draw lands within rounding of a boundary (not expected
    // on these six rows; a failure here would show it).
    EXPECT_EQ(got.tokens[r].token, want.tokens[r].token) << "row " << r;
    EXPECT_NEAR(got.tokens[r].logprob, want.tokens[r].logprob, 2e-3f) << "row " << r;
  }
}

TEST(CudaForwardTest, WeightsRoundTripAndPartialUploads) {
  GpuEnv gpu;
  SKIP_WITHOUT_GPU(gpu);
  ModelTestEnv env;
  auto cpu = LoadCpu(env, Llama(), "cuda_fwd_weights");
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  const CudaTransformerModel::Options co =
      ModelOptions(gpu.pool.get(), DType::kBFloat16, DType::kBFloat16, 16, 2, 32);
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co, stream.get()));
  // Download into a second host copy: every value is the bf16 rounding of
  // the original.
  ASSERT_OK_AND_ASSIGN(auto copy, ModelWeights::Allocate(cpu->config(), env.pool.get()));
  ASSERT_OK(dev->DownloadWeights(copy.get(), stream.get()));
  for (const WeightInfo& w : cpu->weights().List()) {
    ASSERT_OK_AND_ASSIGN(WeightInfo c, copy->Find(w.name));
    for (int64_t i = 0; i < w.NumElements(); ++i) {
      const float want = float(__float2bfloat16_rn(w.data[i]));
      ASSERT_EQ(c.data[i], want) << w.name << "[" << i << "]";
    }
  }
  // Change one tensor on the host and upload only it.
  ASSERT_OK_AND_ASSIGN(WeightInfo norm, cpu->weights().Find("model.norm.weight"));
  std::vector<float> v(norm.NumElements(), 0.5f);
  ASSERT_OK(cpu->weights().Overwrite("model.norm.weight", TensorDtype::kF32, norm.shape, v.data(),
                                     v.size() * sizeof(float)));
  ASSERT_OK(dev->UploadTensors(cpu->weights(), {"model.norm.weight"}, stream.get()));
  ASSERT_OK(dev->DownloadWeights(copy.get(), stream.get()));
  ASSERT_OK_AND_ASSIGN(WeightInfo got, copy->Find("model.norm.weight"));
  EXPECT_EQ(std::vector<float>(got.data, got.data + got.NumElements()), v);
  EXPECT_THAT(dev->UploadTensors(cpu->weights(), {"no.such.tensor"}, stream.get()),
              StatusIs(absl::StatusCode::kNotFound));
}

// A padded decode step captured once replays to the eager results at every
// step (positions, pages and tokens change through the inputs region).
TEST(CudaForwardTest, CapturedDecodeStepMatchesEager) {
  GpuEnv gpu;
  SKIP_WITHOUT_GPU(gpu);
  ModelTestEnv env;
  TinyModelOptions o = Llama();
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention};
  o.sliding_window = 5;
  auto cpu = LoadCpu(env, o, "cuda_fwd_graph");
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  const CudaTransformerModel::Options co =
      ModelOptions(gpu.pool.get(), DType::kBFloat16, DType::kBFloat16, 16, 4, 64, 8);
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 256, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto eager_kv,
                       DeviceKv::Mirror(kv->view(), gpu.pool.get(), DType::kBFloat16, 8));
  ASSERT_OK_AND_ASSIGN(auto graph_kv,
                       DeviceKv::Mirror(kv->view(), gpu.pool.get(), DType::kBFloat16, 8));
  std::vector<std::vector<int32_t>> seqs = {{5, 4, 3, 2, 1, 9}, {8, 8, 1}, {2, 7, 1, 8, 2, 8}};
  std::vector<std::vector<int32_t>> slots;
  for (size_t r = 0; r < seqs.size(); ++r) {
    ASSERT_OK_AND_ASSIGN(auto s, kv->AddSequence(48));
    slots.push_back(s);
  }
  std::vector<ForwardRequest> batch(seqs.size());
  for (size_t r = 0; r < seqs.size(); ++r) {
    batch[r].new_tokens = seqs[r];
    batch[r].slots = slots[r];
  }
  // Prefill both caches eagerly.
  ASSERT_OK_AND_ASSIGN(ForwardResult e0, dev->Forward(batch, eager_kv->view(), {}, stream.get()));
  ASSERT_OK_AND_ASSIGN(ForwardResult g0, dev->Forward(batch, graph_kv->view(), {}, stream.get()));
  for (size_t r = 0; r < seqs.size(); ++r) {
    ASSERT_EQ(e0.tokens[r].token, g0.tokens[r].token);
    seqs[r].push_back(e0.tokens[r].token);
  }
  const int32_t bucket = kc::BucketFor(3, kc::DecodeGraphBuckets(4));
  ASSERT_EQ(bucket, 4);
  kc::CudaGraph graph;
  for (int step = 0; step < 8; ++step) {
    for (size_t r = 0; r < seqs.size(); ++r) {
      batch[r].cached_len = static_cast<int64_t>(seqs[r].size()) - 1;
      batch[r].new_tokens = absl::MakeConstSpan(&seqs[r].back(), 1);
    }
    ASSERT_OK_AND_ASSIGN(ForwardResult eager,
                         dev->Forward(batch, eager_kv->view(), {}, stream.get()));
    ASSERT_OK_AND_ASSIGN(StepPlan plan,
                         dev->PrepareInputs(batch, graph_kv->view(), bucket, stream.get()));
    EXPECT_EQ(plan.num_requests, bucket);
    EXPECT_EQ(plan.real_requests, 3);
    if (!graph.valid()) {
      ASSERT_OK(dev->EnqueueStep(plan, graph_kv->view(), stream.get()));  // warm-up
      ASSERT_OK_AND_ASSIGN(graph, kc::CudaGraph::Capture(stream.get(), [&] {
                             return dev->EnqueueStep(plan, graph_kv->view(), stream.get());
                           }));
    } else {
      ASSERT_OK(graph.Replay(stream.get()));
    }
    ASSERT_OK_AND_ASSIGN(auto replayed, dev->ReadResults(plan, batch, stream.get()));
    for (size_t r = 0; r < seqs.size(); ++r) {
      // The padded batch's decode splits differ from the eager step's (they
      // are chosen for max_context), so the attention sums run in another
      // order: compare within rounding, and tokens where clear.
      EXPECT_NEAR(replayed[r].logprob, eager.tokens[r].logprob, 5e-2f) << "step " << step;
      seqs[r].push_back(eager.tokens[r].token);
    }
  }
}

TEST(CudaForwardTest, RejectsBatchesBeyondTheLimits) {
  GpuEnv gpu;
  SKIP_WITHOUT_GPU(gpu);
  ModelTestEnv env;
  auto cpu = LoadCpu(env, TinyModelOptions(), "cuda_fwd_limits");
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  const CudaTransformerModel::Options co =
      ModelOptions(gpu.pool.get(), DType::kFloat32, DType::kFloat32, 4, 1, 8);
  ASSERT_OK_AND_ASSIGN(auto dev, CudaTransformerModel::Create(cpu->weights(), co, stream.get()));
  ASSERT_OK_AND_ASSIGN(auto kv, SimpleKvCache::Create(cpu->config(), 64, env.pool.get()));
  ASSERT_OK_AND_ASSIGN(auto dkv, DeviceKv::Mirror(kv->view(), gpu.pool.get(), DType::kFloat32, 1));
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
  // A KV view of another dtype than the model's.
  ASSERT_OK_AND_ASSIGN(auto bf16_kv,
                       DeviceKv::Mirror(kv->view(), gpu.pool.get(), DType::kBFloat16, 1));
  batch[0].new_tokens = absl::MakeConstSpan(tokens.data(), 2);
  EXPECT_THAT(dev->Forward(batch, bf16_kv->view(), {}, stream.get()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CudaForwardTest, NeedsACudaPoolAndACompatibleKvDtype) {
  ModelTestEnv env;  // CPU backend pool
  auto cpu = LoadCpu(env, TinyModelOptions(), "cuda_fwd_cpu_pool");
  CudaTransformerModel::Options co;
  co.device_pool = env.pool.get();
  EXPECT_THAT(CudaTransformerModel::Create(cpu->weights(), co, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
  GpuEnv gpu;
  SKIP_WITHOUT_GPU(gpu);
  co.device_pool = gpu.pool.get();
  co.dtype = DType::kBFloat16;
  co.kv_dtype = DType::kFloat16;
  EXPECT_THAT(CudaTransformerModel::Create(cpu->weights(), co, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace engine
}  // namespace colo
