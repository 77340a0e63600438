// GPU decode throughput as a fraction of the HBM-bandwidth roofline
// (issue 15). Prints figures; no timed assertions.
//
//   bazel run --config=cuda //bench/model:gpu_decode_bench -- [--size=1b|100m]
//       [--model_dir=DIR] [--dtype=bfloat16] [--kv_cache_dtype=auto]
//       [--batch=1] [--prompt_len=512] [--decode_steps=256]
//
// Model: --model_dir, or a generated one: --size=1b is a Llama-3.2-1B-shaped
// model (16 layers, hidden 2048, 32 heads / 8 KV heads of 64, MLP 8192,
// vocab 128256, tied embeddings: 1.24 B parameters), --size=100m the ~100M
// model of bench/model/README.md. Generated weights are seeded random values
// filled in memory (no checkpoint on disk; the values do not change the
// speed).
// The model runs through CudaTransformerModel in --dtype with a paged KV
// cache (page size 16) of --kv_cache_dtype; after a prefill of --prompt_len
// tokens, each decode step of the --batch requests is one CUDA graph replay
// (captured on the first step, padded to the batch's graph bucket) plus the
// host work of packing and uploading the step's inputs and reading back the
// sampled tokens.
//
// Roofline: a decode step must read every weight once (the embedding table
// only its rows unless tied to lm_head) plus the KV cache so far; the floor
// time is those bytes / peak bandwidth, with peak = 2 (DDR) x memory clock x
// bus width (cudaDevAttrMemoryClockRate, cudaDevAttrGlobalMemoryBusWidth).
// Reported twice: over the GPU time of the graph replay (cudaEvent) and over
// the whole step as the host sees it.
//
// Without a GPU it prints why and exits 0.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/device/cpu_backend.h"
#include "engine/device/device_backend_factory.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/cuda_forward.h"
#include "engine/model/forward.h"
#include "engine/model/model_weights.h"
#include "engine/model/tiny_model.h"
#include "kernels/cuda/attention_plan.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/dtype.h"

ABSL_FLAG(std::string, model_dir, "", "Model directory (empty: a generated model of --size).");
ABSL_FLAG(std::string, size, "1b", "Generated model: 1b or 100m.");
ABSL_FLAG(std::string, dtype, "bfloat16", "bfloat16, float16 or float32.");
ABSL_FLAG(std::string, kv_cache_dtype, "auto", "auto (the dtype) or fp8_e4m3.");
ABSL_FLAG(int, batch, 1, "Requests decoding together.");
ABSL_FLAG(int, prompt_len, 512, "Prompt tokens of each request before decoding.");
ABSL_FLAG(int, decode_steps, 256, "Timed decode steps.");

namespace colo {
namespace engine {
namespace {

namespace kc = ::colo::kernels::cuda;

constexpr int32_t kPageSize = 16;

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

template <typename T>
T Value(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, v.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*v);
}
void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

TinyModelOptions GeneratedModel(const std::string& size) {
  TinyModelOptions o;
  o.arch = "llama";
  o.tie_embeddings = true;
  o.seed = 3;
  if (size == "100m") {
    o.layers = 12;
    o.hidden = 768;
    o.heads = 12;
    o.kv_heads = 4;
    o.intermediate = 2048;
    o.vocab = 32000;
  } else {
    o.layers = 16;
    o.hidden = 2048;
    o.heads = 32;
    o.kv_heads = 8;
    o.head_dim = 64;
    o.intermediate = 8192;
    o.vocab = 128256;
    o.max_position = 131072;
    o.rope_theta = 500000.0;
  }
  return o;
}

// Seeded small random weights (norms 1), filled in memory.
void FillRandom(ModelWeights* w) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-0.02f, 0.02f);
  for (const WeightInfo& t : w->List()) {
    const bool norm = t.name.find("norm") != std::string::npos;
    for (int64_t i = 0; i < t.NumElements(); ++i) t.data[i] = norm ? 1.0f : dist(rng);
  }
}

int Run() {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> cuda = CreateDeviceBackend("cuda");
  absl::Status runtime = kc::CudaDeviceAvailable();
  if (!cuda.ok() || !runtime.ok()) {
    std::printf("gpu_decode_bench: skipped, no CUDA device: %s\n",
                (!cuda.ok() ? cuda.status() : runtime).ToString().c_str());
    return 0;
  }
  const kc::DType dtype = Value(kc::ParseDType(absl::GetFlag(FLAGS_dtype)), "--dtype");
  const kc::DType kv_dtype = absl::GetFlag(FLAGS_kv_cache_dtype) == "auto"
                                 ? dtype
                                 : Value(kc::ParseDType(absl::GetFlag(FLAGS_kv_cache_dtype)),
                                         "--kv_cache_dtype");
  const int batch_size = absl::GetFlag(FLAGS_batch);
  const int prompt = absl::GetFlag(FLAGS_prompt_len);
  const int steps = absl::GetFlag(FLAGS_decode_steps);

  // Host weights (CPU pool), then the device model.
  auto cpu_backend = Value(CpuBackend::Create({}), "cpu backend");
  TaggedPool::Options hp;
  hp.backend = cpu_backend.get();
  auto host_pool = Value(TaggedPool::Create(hp), "host pool");
  CachingAllocator::Options ao;
  ao.backend = cpu_backend.get();
  auto host_allocator = Value(CachingAllocator::Create(ao), "host allocator");
  std::unique_ptr<TransformerModel> host_model;
  std::unique_ptr<ModelWeights> generated;
  const ModelWeights* host_weights = nullptr;
  const double t_load = Now();
  if (!absl::GetFlag(FLAGS_model_dir).empty()) {
    TransformerModel::Options mo;
    mo.model_dir = absl::GetFlag(FLAGS_model_dir);
    mo.weights_pool = host_pool.get();
    mo.allocator = host_allocator.get();
    host_model = Value(TransformerModel::Load(mo), "load model");
    host_weights = &host_model->weights();
  } else {
    const ModelConfig c =
        Value(TinyModelConfig(GeneratedModel(absl::GetFlag(FLAGS_size))), "model config");
    generated = Value(ModelWeights::Allocate(c, host_pool.get()), "allocate weights");
    FillRandom(generated.get());
    host_weights = generated.get();
  }
  const ModelConfig& c = host_weights->config();

  TaggedPool::Options dp;
  dp.backend = cuda->get();
  auto device_pool = Value(TaggedPool::Create(dp), "device pool");
  const int64_t context = prompt + steps + 2;
  auto stream = Value(kc::CudaStream::Create(), "stream");
  CudaTransformerModel::Options co;
  co.device_pool = device_pool.get();
  co.dtype = dtype;
  co.kv_dtype = kv_dtype;
  co.max_tokens = std::max(prompt, batch_size);
  co.max_requests = batch_size;
  co.max_context = (context + kPageSize - 1) / kPageSize * kPageSize;
  co.page_size = kPageSize;
  auto model = Value(CudaTransformerModel::Create(*host_weights, co, stream.get()), "cuda model");
  const double load_s = Now() - t_load;

  // Paged KV cache on the device: request b owns pages [1 + b * pages, ...)
  // (page 0 is the padding page); identity full->SWA map for sliding layers.
  const int64_t pages_per_request = co.max_context / kPageSize;
  const int64_t num_slots = (1 + batch_size * pages_per_request) * kPageSize;
  KvCacheView kv;
  kv.page_size = kPageSize;
  for (int i = 0; i < c.num_layers; ++i) {
    kvcache::LayerKv L;
    L.num_slots = num_slots;
    L.num_kv_heads = c.num_kv_heads;
    L.head_dim = c.head_dim;
    L.dtype = static_cast<kvcache::KvDtype>(kv_dtype);
    L.sliding = c.layer_types[i] == LayerType::kSlidingAttention;
    const size_t bytes = num_slots * L.SlotElements() * kc::DTypeBytes(kv_dtype);
    L.k = Value(device_pool->Allocate(MemoryTag::kKvCache, bytes, "k"), "kv alloc");
    L.v = Value(device_pool->Allocate(MemoryTag::kKvCache, bytes, "v"), "kv alloc");
    kv.layers.push_back(L);
  }
  if (c.HasSlidingLayers()) {
    std::vector<int32_t> identity(num_slots);
    for (int64_t i = 0; i < num_slots; ++i) identity[i] = static_cast<int32_t>(i);
    void* map = Value(device_pool->Allocate(MemoryTag::kKvCache, num_slots * 4, "map"), "map");
    Check(kc::CudaStatus(cudaMemcpyAsync(map, identity.data(), num_slots * 4,
                                         cudaMemcpyHostToDevice, stream.get()),
                         "map copy"),
          "map copy");
    Check(stream.Synchronize(), "map copy");
    kv.full_to_swa = static_cast<const int32_t*>(map);
    kv.full_to_swa_size = num_slots;
  }
  std::vector<std::vector<int32_t>> pages(batch_size), seqs(batch_size);
  for (int b = 0; b < batch_size; ++b) {
    for (int64_t p = 0; p < pages_per_request; ++p) {
      pages[b].push_back(static_cast<int32_t>(1 + b * pages_per_request + p));
    }
    for (int i = 0; i < prompt; ++i) {
      seqs[b].push_back(static_cast<int32_t>((i * 7919 + 13 + b * 31) % c.vocab_size));
    }
    seqs[b].reserve(prompt + steps + 2);
  }
  std::vector<ForwardRequest> batch(batch_size);
  // Prefill one request at a time (max_tokens = prompt_len).
  for (int b = 0; b < batch_size; ++b) {
    ForwardRequest r;
    r.new_tokens = seqs[b];
    r.pages = pages[b];
    std::vector<ForwardRequest> one = {r};
    ForwardResult first = Value(model->Forward(one, kv, {}, stream.get()), "prefill");
    seqs[b].push_back(first.tokens[0].token);
  }

  const int32_t bucket = kc::BucketFor(batch_size, kc::DecodeGraphBuckets(batch_size));
  cudaEvent_t start, stop;
  Check(kc::CudaStatus(cudaEventCreate(&start), "cudaEventCreate"), "event");
  Check(kc::CudaStatus(cudaEventCreate(&stop), "cudaEventCreate"), "event");
  kc::CudaGraph graph;
  double gpu_ms = 0, t0 = 0;
  int32_t splits = 1;
  for (int s = 0; s <= steps; ++s) {  // step 0 captures and warms up
    if (s == 1) t0 = Now();
    for (int b = 0; b < batch_size; ++b) {
      batch[b].cached_len = static_cast<int64_t>(seqs[b].size()) - 1;
      batch[b].new_tokens = absl::MakeConstSpan(&seqs[b].back(), 1);
      batch[b].pages = pages[b];
    }
    StepPlan plan = Value(model->PrepareInputs(batch, kv, bucket, stream.get()), "prepare");
    splits = plan.decode_splits;
    if (!graph.valid()) {
      Check(model->EnqueueStep(plan, kv, stream.get()), "warm-up step");
      graph = Value(kc::CudaGraph::Capture(stream.get(),
                                           [&] { return model->EnqueueStep(plan, kv, stream.get()); }),
                    "capture");
    } else {
      Check(kc::CudaStatus(cudaEventRecord(start, stream.get()), "cudaEventRecord"), "event");
      Check(graph.Replay(stream.get()), "replay");
      Check(kc::CudaStatus(cudaEventRecord(stop, stream.get()), "cudaEventRecord"), "event");
    }
    std::vector<kernels::SampledToken> out =
        Value(model->ReadResults(plan, batch, stream.get()), "read");
    if (s >= 1) {
      float ms = 0;
      Check(kc::CudaStatus(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime"),
            "event");
      gpu_ms += ms;
    }
    for (int b = 0; b < batch_size; ++b) seqs[b].push_back(out[b].token);
  }
  const double wall = Now() - t0;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);

  int device = 0, clock_khz = 0, bus_bits = 0;
  Check(kc::CudaStatus(cudaGetDevice(&device), "cudaGetDevice"), "device");
  Check(kc::CudaStatus(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device),
                       "cudaDeviceGetAttribute(MemoryClockRate)"),
        "attr");
  Check(kc::CudaStatus(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device),
                       "cudaDeviceGetAttribute(GlobalMemoryBusWidth)"),
        "attr");
  cudaDeviceProp prop;
  Check(kc::CudaStatus(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"), "prop");
  const double peak = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0);  // bytes/s
  const double elem = static_cast<double>(kc::DTypeBytes(dtype));
  const double embed_bytes =
      c.tie_word_embeddings ? 0.0 : double(c.vocab_size) * c.hidden_size * elem;
  const double weight_read = double(model->weight_bytes()) - embed_bytes;
  // Average context over the timed steps; K and V of every layer.
  const double avg_ctx = prompt + 1 + steps / 2.0;
  const double kv_read = batch_size * avg_ctx * c.num_layers * 2.0 * c.KvSize() *
                         double(kc::DTypeBytes(kv_dtype));
  const double bytes = weight_read + kv_read;
  const double gpu_s = gpu_ms / 1e3 / steps;
  const double wall_s = wall / steps;
  std::printf("device: %s, %d SMs, peak HBM bandwidth %.0f GB/s (mem clock %d kHz, bus %d bits)\n",
              prop.name, prop.multiProcessorCount, peak / 1e9, clock_khz, bus_bits);
  std::printf("model: %lld parameters, %d layers, hidden %lld, vocab %lld, %s weights %.1f MB, "
              "%s KV cache; loaded in %.1f s\n",
              static_cast<long long>(c.NumParameters()), c.num_layers,
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size),
              std::string(kc::DTypeName(dtype)).c_str(), model->weight_bytes() / 1e6,
              std::string(kc::DTypeName(kv_dtype)).c_str(), load_s);
  std::printf("decode batch %d (graph bucket %d, %d attention splits), prompt %d, %d steps\n",
              batch_size, bucket, splits, prompt, steps);
  std::printf("bytes read per decode step: %.1f MB (weights %.1f MB + KV %.2f MB at avg context %.0f)\n",
              bytes / 1e6, weight_read / 1e6, kv_read / 1e6, avg_ctx);
  std::printf("GPU time (graph replay):  %.1f steps/s, %.1f tokens/s, %.3f ms/step, %.1f GB/s = "
              "%.1f%% of roofline\n",
              1.0 / gpu_s, batch_size / gpu_s, gpu_s * 1e3, bytes / gpu_s / 1e9,
              100.0 * bytes / gpu_s / peak);
  std::printf("end to end (host view):   %.1f steps/s, %.1f tokens/s, %.3f ms/step, %.1f GB/s = "
              "%.1f%% of roofline\n",
              1.0 / wall_s, batch_size / wall_s, wall_s * 1e3, bytes / wall_s / 1e9,
              100.0 * bytes / wall_s / peak);
  std::printf("roofline floor: %.3f ms/step (goal: >= 70%% at batch 1 for a 1B-class model)\n",
              bytes / peak * 1e3);
  return 0;
}

}  // namespace
}  // namespace engine
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::engine::Run();
}
