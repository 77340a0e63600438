// GPU decode throughput at batch 1 as a fraction of the HBM-bandwidth
// roofline (issue 5). Prints figures; no timed assertions.
//
//   bazel run --config=cuda //bench/model:gpu_decode_bench -- [--model_dir=DIR]
//       [--prompt_len=64] [--decode_steps=256]
//
// Without --model_dir it writes the ~100M-parameter random model of
// bench/model/README.md (llama, 12 layers, hidden 768, 12 heads / 4 KV heads,
// MLP 2048, vocab 32000, tied embeddings, seed 3) to a temporary directory.
// The model runs through CudaTransformerModel (fp32, cuBLAS); each decode step
// is one CUDA graph replay (captured on the first step) plus the host work of
// uploading the step's inputs and reading back the greedy token.
//
// Roofline: a batch-1 decode step must read every weight once (the embedding
// table only one row unless tied to lm_head) plus the KV cache so far; the
// floor time is those bytes / peak bandwidth, with peak = 2 (DDR) x memory
// clock x bus width (cudaDevAttrMemoryClockRate, cudaDevAttrGlobalMemoryBusWidth).
// Reported twice: over the GPU time of the graph replay (cudaEvent) and over
// the whole step as the host sees it.
//
// Without a GPU it prints why and exits 0.
#include <cuda_runtime.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
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
#include "engine/model/tiny_model.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"

ABSL_FLAG(std::string, model_dir, "", "Model directory (empty: a generated ~100M model).");
ABSL_FLAG(int, prompt_len, 64, "Prompt tokens before decoding.");
ABSL_FLAG(int, decode_steps, 256, "Timed decode steps.");

namespace colo {
namespace engine {
namespace {

namespace kc = ::colo::kernels::cuda;

double Now() {
  return std::chrono::duration<double>(
             std::chrono::steady_clock::now().time_since_epoch())
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

int Run() {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> cuda = CreateDeviceBackend("cuda");
  absl::Status runtime = kc::CudaDeviceAvailable();
  if (!cuda.ok() || !runtime.ok()) {
    std::printf("gpu_decode_bench: skipped, no CUDA device: %s\n",
                (!cuda.ok() ? cuda.status() : runtime).ToString().c_str());
    return 0;
  }
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = "/tmp/colo_gpu_decode_bench_" + std::to_string(getpid());
    TinyModelOptions o;
    o.arch = "llama";
    o.layers = 12;
    o.hidden = 768;
    o.heads = 12;
    o.kv_heads = 4;
    o.intermediate = 2048;
    o.vocab = 32000;
    o.tie_embeddings = true;
    o.seed = 3;
    Check(WriteTinyModel(o, dir), "write model");
  }

  // Host copy of the weights (CPU pool), then the device model.
  auto cpu_backend = Value(CpuBackend::Create({}), "cpu backend");
  TaggedPool::Options hp;
  hp.backend = cpu_backend.get();
  auto host_pool = Value(TaggedPool::Create(hp), "host pool");
  CachingAllocator::Options ao;
  ao.backend = cpu_backend.get();
  auto host_allocator = Value(CachingAllocator::Create(ao), "host allocator");
  TransformerModel::Options mo;
  mo.model_dir = dir;
  mo.weights_pool = host_pool.get();
  mo.allocator = host_allocator.get();
  auto host_model = Value(TransformerModel::Load(mo), "load model");
  const ModelConfig& c = host_model->config();

  TaggedPool::Options dp;
  dp.backend = cuda->get();
  auto device_pool = Value(TaggedPool::Create(dp), "device pool");
  const int prompt = absl::GetFlag(FLAGS_prompt_len);
  const int steps = absl::GetFlag(FLAGS_decode_steps);
  const int64_t context = prompt + steps + 2;
  CudaTransformerModel::Options co;
  co.device_pool = device_pool.get();
  co.max_tokens = prompt;
  co.max_requests = 1;
  co.max_context = context;
  auto model = Value(CudaTransformerModel::Create(host_model->weights(), co), "cuda model");
  auto stream = Value(kc::CudaStream::Create(), "stream");

  // KV cache on the device: slots 16.. for the one sequence; identity
  // full->SWA map when the model has sliding layers.
  constexpr int64_t kPad = 16;
  const int64_t num_slots = kPad + context;
  KvCacheView kv;
  for (int i = 0; i < c.num_layers; ++i) {
    kvcache::LayerKv L;
    L.num_slots = num_slots;
    L.num_kv_heads = c.num_kv_heads;
    L.head_dim = c.head_dim;
    L.sliding = c.layer_types[i] == LayerType::kSlidingAttention;
    const size_t bytes = num_slots * L.SlotElements() * sizeof(float);
    L.k = Value(device_pool->Allocate(MemoryTag::kKvCache, bytes, "k"), "kv alloc");
    L.v = Value(device_pool->Allocate(MemoryTag::kKvCache, bytes, "v"), "kv alloc");
    kv.layers.push_back(L);
  }
  std::vector<int32_t> identity(num_slots);
  for (int64_t i = 0; i < num_slots; ++i) identity[i] = static_cast<int32_t>(i);
  if (c.HasSlidingLayers()) {
    void* map = Value(device_pool->Allocate(MemoryTag::kKvCache, num_slots * 4, "map"), "map");
    Check((*cuda)->CopyToDevice(map, identity.data(), num_slots * 4), "map copy");
    kv.full_to_swa = static_cast<const int32_t*>(map);
    kv.full_to_swa_size = num_slots;
  }
  std::vector<int32_t> slots(identity.begin() + kPad, identity.end());

  std::vector<int32_t> seq;
  for (int i = 0; i < prompt; ++i) seq.push_back(static_cast<int32_t>((i * 7919 + 13) % c.vocab_size));
  ForwardRequest r;
  r.new_tokens = seq;
  r.slots = slots;
  std::vector<ForwardRequest> batch = {r};
  ForwardResult first = Value(model->Forward(batch, kv, {}, stream.get()), "prefill");
  seq.reserve(prompt + steps + 2);
  seq.push_back(first.tokens[0].token);

  cudaEvent_t start, stop;
  Check(kc::CudaStatus(cudaEventCreate(&start), "cudaEventCreate"), "event");
  Check(kc::CudaStatus(cudaEventCreate(&stop), "cudaEventCreate"), "event");
  kc::CudaGraph graph;
  double gpu_ms = 0, t0 = 0;
  for (int s = 0; s <= steps; ++s) {  // step 0 captures and warms up
    if (s == 1) t0 = Now();
    batch[0].cached_len = static_cast<int64_t>(seq.size()) - 1;
    batch[0].new_tokens = absl::MakeConstSpan(&seq.back(), 1);
    CudaTransformerModel::StepShape shape =
        Value(model->PrepareInputs(batch, kv, stream.get()), "prepare");
    if (!graph.valid()) {
      graph = Value(kc::CudaGraph::Capture(stream.get(), [&] {
                      return model->EnqueueStep(shape, kv, stream.get());
                    }),
                    "capture");
    }
    Check(kc::CudaStatus(cudaEventRecord(start, stream.get()), "cudaEventRecord"), "event");
    Check(graph.Replay(stream.get()), "replay");
    Check(kc::CudaStatus(cudaEventRecord(stop, stream.get()), "cudaEventRecord"), "event");
    std::vector<kernels::SampledToken> out = Value(model->ReadGreedy(shape, stream.get()), "read");
    float ms = 0;
    Check(kc::CudaStatus(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime"), "event");
    if (s >= 1) gpu_ms += ms;
    seq.push_back(out[0].token);
  }
  const double wall = Now() - t0;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);

  int device = 0, clock_khz = 0, bus_bits = 0;
  Check(kc::CudaStatus(cudaGetDevice(&device), "cudaGetDevice"), "device");
  Check(kc::CudaStatus(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device),
                       "cudaDeviceGetAttribute(MemoryClockRate)"), "attr");
  Check(kc::CudaStatus(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device),
                       "cudaDeviceGetAttribute(GlobalMemoryBusWidth)"), "attr");
  cudaDeviceProp prop;
  Check(kc::CudaStatus(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties"), "prop");
  const double peak = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0);  // bytes/s
  const double embed_bytes = c.tie_word_embeddings ? 0.0 : double(c.vocab_size) * c.hidden_size * 4;
  const double weight_read = double(model->weight_bytes()) - embed_bytes;
  // Average context over the timed steps; K and V of every layer.
  const double avg_ctx = prompt + 1 + steps / 2.0;
  const double kv_read = avg_ctx * c.num_layers * 2.0 * c.KvSize() * 4;
  const double bytes = weight_read + kv_read;
  const double gpu_s = gpu_ms / 1e3 / steps;
  const double wall_s = wall / steps;
  std::printf("device: %s, peak HBM bandwidth %.0f GB/s (mem clock %d kHz, bus %d bits)\n",
              prop.name, peak / 1e9, clock_khz, bus_bits);
  std::printf("model: %lld parameters, %d layers, hidden %lld, vocab %lld, fp32 weights %.1f MB\n",
              static_cast<long long>(c.NumParameters()), c.num_layers,
              static_cast<long long>(c.hidden_size), static_cast<long long>(c.vocab_size),
              model->weight_bytes() / 1e6);
  std::printf("bytes read per decode step: %.1f MB (weights %.1f MB + KV %.2f MB at avg context %.0f)\n",
              bytes / 1e6, weight_read / 1e6, kv_read / 1e6, avg_ctx);
  std::printf("decode batch 1 (graph replay, GPU time): %.1f tokens/s, %.3f ms/step, %.1f GB/s = %.1f%% of roofline\n",
              1.0 / gpu_s, gpu_s * 1e3, bytes / gpu_s / 1e9, 100.0 * bytes / gpu_s / peak);
  std::printf("decode batch 1 (end to end, host view):  %.1f tokens/s, %.3f ms/step, %.1f GB/s = %.1f%% of roofline\n",
              1.0 / wall_s, wall_s * 1e3, bytes / wall_s / 1e9, 100.0 * bytes / wall_s / peak);
  std::printf("roofline floor: %.3f ms/step = %.0f tokens/s (goal: >= 70%%)\n",
              bytes / peak * 1e3, peak / bytes);
  return 0;
}

}  // namespace
}  // namespace engine
}  // namespace colo

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return colo::engine::Run();
}
