// EngineRuntime with --device=cuda against --device=cpu, in process, on tiny
// models (full attention, and sliding-window + full layers with q/k norm):
// greedy tokens agree except at near-ties over 64 tokens of 8 prompts, in
// float32 and (on a bf16 checkpoint) bfloat16, and with an fp8 KV cache;
// seeded sampling (on the device) agrees; decode runs from CUDA graphs that
// keep replaying after a release/resume; release and resume of every tag
// really free and restore device memory; weights released without a host
// backup need an update that writes every tensor (there is no host master);
// a committed update reaches the GPU; checksums see the device's weights.
// --config=cuda only; skips where no GPU is usable (fails under
// COLO_REQUIRE_GPU=1).
#include <cuda_bf16.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/device/device_backend_factory.h"
#include "engine/model/cuda_model_runner.h"
#include "engine/model/tiny_model.h"
#include "engine/scheduler/read_to_end.h"
#include "engine/server/engine_runtime.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"
#include "tests/util/gpu_required.h"
#include "tests/util/greedy_agreement.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

namespace kc = ::colo::kernels::cuda;
using test_util::AgreementTolerance;

constexpr int kVocab = 256;
constexpr int kPrompts = 8;

absl::Status GpuStatus() {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = CreateDeviceBackend("cuda");
  if (!b.ok()) return b.status();
  return kc::CudaDeviceAvailable();
}

#define SKIP_WITHOUT_GPU() COLO_SKIP_OR_FAIL_WITHOUT_GPU(GpuStatus())

std::string ModelDir(const std::string& name, const TinyModelOptions& o) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/rt_cuda_", name);
  EXPECT_OK(WriteTinyModel(o, dir));
  return dir;
}

TinyModelOptions FullModel() {
  TinyModelOptions o;
  o.layers = 2;
  o.hidden = 64;
  o.heads = 4;
  o.kv_heads = 2;
  o.vocab = kVocab;
  o.max_position = 1024;
  o.seed = 21;
  return o;
}

TinyModelOptions SlidingModel() {
  TinyModelOptions o = FullModel();
  o.arch = "qwen3";  // q/k norm
  o.layers = 4;
  o.layer_types = {LayerType::kSlidingAttention, LayerType::kFullAttention,
                   LayerType::kSlidingAttention, LayerType::kFullAttention};
  o.sliding_window = 24;
  o.seed = 22;
  return o;
}

struct RuntimeFlags {
  std::string device = "cuda";
  bool host_backup = false;
  std::string dtype = "auto";
  std::string kv_cache_dtype = "auto";
  bool graphs = true;
};

std::unique_ptr<EngineRuntime> StartRuntime(const std::string& model_dir, const RuntimeFlags& f) {
  EngineOptions o;
  o.model_dir = model_dir;
  o.device = f.device;
  o.dtype = f.dtype;
  o.kv_cache_dtype = f.kv_cache_dtype;
  o.disable_cuda_graph = !f.graphs;
  o.page_size = 8;
  o.kv_cache_bytes = int64_t{16} << 20;
  o.max_running_requests = 16;
  o.max_batch_tokens = 256;
  o.chunked_prefill_size = 64;
  o.max_kv_rows = 32;
  o.cpu_threads = 2;
  o.weights_host_backup = f.host_backup;
  absl::StatusOr<std::unique_ptr<EngineRuntime>> rt = EngineRuntime::Create(o);
  EXPECT_OK(rt.status()) << f.device << " " << f.dtype;
  return rt.ok() ? *std::move(rt) : nullptr;
}

std::unique_ptr<EngineRuntime> Cpu(const std::string& dir) {
  RuntimeFlags f;
  f.device = "cpu";
  return StartRuntime(dir, f);
}

CudaModelRunner* Runner(EngineRuntime& rt) { return dynamic_cast<CudaModelRunner*>(&rt.runner()); }

std::vector<std::vector<int32_t>> Prompts() {
  std::vector<std::vector<int32_t>> p;
  for (int i = 0; i < kPrompts; ++i) p.push_back(TinyPrompt(i, 5 + 9 * i, kVocab));  // 5 .. 68
  return p;
}

struct Output {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  absl::Status error;
};

// Submits every prompt at once (one batch) and collects the outputs.
std::vector<Output> Generate(EngineRuntime& rt, const std::vector<std::vector<int32_t>>& prompts,
                             int max_new_tokens, float temperature = 0.0f) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  std::vector<Output> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateSpec spec;
    spec.rid = absl::StrCat("r", i);
    spec.input_ids = prompts[i];
    spec.max_new_tokens = max_new_tokens;
    spec.ignore_eos = true;
    spec.sampling.temperature = temperature;
    spec.sampling.top_k = temperature > 0 && i % 2 == 0 ? 40 : 0;
    spec.sampling.top_p = temperature > 0 && i % 3 == 0 ? 0.9f : 1.0f;
    spec.seed = 1000 + i;
    absl::StatusOr<std::shared_ptr<RequestStream>> s = rt.scheduler().Submit(spec);
    if (!s.ok()) {
      out[i].error = s.status();
      streams.push_back(nullptr);
      continue;
    }
    streams.push_back(*s);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    if (streams[i] == nullptr) continue;
    StreamOutput o = ReadToEnd(*streams[i], absl::Now() + absl::Seconds(120));
    out[i].tokens = std::move(o.tokens);
    out[i].logprobs = std::move(o.logprobs);
    out[i].error = o.error;
  }
  return out;
}

// Every request's outputs agree up to a near-tie (tests/util/greedy_agreement.h);
// returns the number of positions that matched.
int ExpectAgree(const std::vector<Output>& want, const std::vector<Output>& got,
                const std::string& what, const AgreementTolerance& tol = AgreementTolerance()) {
  int matched = 0;
  EXPECT_EQ(want.size(), got.size()) << what;
  for (size_t r = 0; r < want.size() && r < got.size(); ++r) {
    EXPECT_OK(want[r].error) << what << " request " << r;
    EXPECT_OK(got[r].error) << what << " request " << r;
    matched += test_util::ExpectAgreeUpToNearTie(want[r].tokens, want[r].logprobs,
                                                 got[r].tokens, got[r].logprobs,
                                                 absl::StrCat(what, " request ", r), tol);
  }
  return matched;
}

// bf16 activations round at every layer: logprobs move by a few 1e-2.
constexpr AgreementTolerance kBf16Tolerance{6e-2f, 2.5e-1f};

void CheckGreedyParity(const std::string& name, TinyModelOptions model, const RuntimeFlags& gpu_flags,
                       const AgreementTolerance& tol, int min_matched) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir(name, model);
  auto cpu = Cpu(dir);
  auto gpu = StartRuntime(dir, gpu_flags);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->backend().kind(), "cuda");
  EXPECT_EQ(gpu->runner().device_kind(), "cuda");
  const std::vector<Output> want = Generate(*cpu, Prompts(), 64);
  const std::vector<Output> got = Generate(*gpu, Prompts(), 64);
  const int matched = ExpectAgree(want, got, name, tol);
  // Near-ties are rare on these models: most positions must match, or the
  // comparison above proved little.
  EXPECT_GE(matched, min_matched) << name;
  if (gpu_flags.graphs) {
    EXPECT_GT(Runner(*gpu)->graph_steps(), 0) << "decode never replayed a CUDA graph";
  }
}

TEST(EngineRuntimeCudaTest, GreedyMatchesCpuFullAttention) {
  CheckGreedyParity("full", FullModel(), RuntimeFlags(), AgreementTolerance(),
                    kPrompts * 64 * 3 / 4);
}

TEST(EngineRuntimeCudaTest, GreedyMatchesCpuSlidingWindowQkNorm) {
  CheckGreedyParity("sliding", SlidingModel(), RuntimeFlags(), AgreementTolerance(),
                    kPrompts * 64 * 3 / 4);
}

TEST(EngineRuntimeCudaTest, GreedyMatchesCpuWithoutGraphs) {
  RuntimeFlags f;
  f.graphs = false;
  CheckGreedyParity("no_graphs", FullModel(), f, AgreementTolerance(), kPrompts * 64 * 3 / 4);
}

// The same bf16 checkpoint: the CPU converts it to float32 (exactly), the
// GPU (--dtype=auto) computes in bf16.
TEST(EngineRuntimeCudaTest, Bf16GreedyMatchesCpuOnABf16Checkpoint) {
  for (TinyModelOptions m : {FullModel(), SlidingModel()}) {
    m.dtype = TensorDtype::kBF16;
    CheckGreedyParity(absl::StrCat("bf16_", m.arch), m, RuntimeFlags(), kBf16Tolerance,
                      kPrompts * 64 / 2);
  }
}

TEST(EngineRuntimeCudaTest, Fp8KvCacheStaysCloseToCpu) {
  TinyModelOptions m = FullModel();
  m.dtype = TensorDtype::kBF16;
  RuntimeFlags f;
  f.kv_cache_dtype = "fp8_e4m3";
  CheckGreedyParity("fp8_kv", m, f, AgreementTolerance{0.3f, 1.0f}, kPrompts * 64 / 4);
}

// Sampled requests (temperature, top-k, top-p, seeds) sample on the device
// with the CPU's counter-based RNG: the same seed gives the same tokens
// (unless a logit's rounding moves a draw across a boundary: checked like a
// near-tie).
TEST(EngineRuntimeCudaTest, SeededSamplingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir("sampled", FullModel());
  auto cpu = Cpu(dir);
  auto gpu = StartRuntime(dir, RuntimeFlags());
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<Output> want = Generate(*cpu, Prompts(), 24, 0.8f);
  const std::vector<Output> got = Generate(*gpu, Prompts(), 24, 0.8f);
  const int matched = ExpectAgree(want, got, "sampled");
  EXPECT_GE(matched, kPrompts * 24 * 3 / 4);
}

// Overwrites every tensor of `rt`'s weights from `from` (an update that
// carries the whole model).
std::function<absl::Status()> FullUpdate(EngineRuntime* rt, const ModelWeights* from) {
  return [rt, from]() -> absl::Status {
    for (const WeightInfo& w : from->List()) {
      if (absl::Status s = rt->weights().Overwrite(w.name, TensorDtype::kF32, w.shape, w.data,
                                                   w.NumElements() * sizeof(float));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  };
}

// Releases every tag: device memory comes back to the driver; generation is
// refused; after resume without a weights backup the engine needs an update
// that writes every tensor (a commit of nothing does not do), and then
// serves the same tokens; decode graphs captured before keep replaying.
TEST(EngineRuntimeCudaTest, ReleaseResumeAllTagsThenAFullUpdateRestoresWeights) {
  SKIP_WITHOUT_GPU();
  TinyModelOptions m = SlidingModel();
  m.dtype = TensorDtype::kBF16;
  const std::string dir = ModelDir("release", m);
  auto cpu = Cpu(dir);
  auto gpu = StartRuntime(dir, RuntimeFlags());
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<Output> want = Generate(*cpu, Prompts(), 16);
  const std::vector<Output> before_release = Generate(*gpu, Prompts(), 16);
  ExpectAgree(want, before_release, "before release", kBf16Tolerance);
  const int graphs = Runner(*gpu)->num_graphs();
  EXPECT_GT(graphs, 0);

  ASSERT_OK_AND_ASSIGN(MemoryInfo before, gpu->CollectMemory());
  EXPECT_EQ(before.backend_kind, "cuda");
  ASSERT_OK_AND_ASSIGN(TagTransition released, gpu->scheduler().Release(AllMemoryTags()));
  uint64_t freed = 0;
  for (const TagReleaseReport& t : released.release.tags) {
    EXPECT_GT(t.bytes_freed, 0u) << MemoryTagName(t.tag);
    freed += t.bytes_freed;
  }
  ASSERT_OK_AND_ASSIGN(MemoryInfo after, gpu->CollectMemory());
  for (const TagInfo& t : after.pool.tags) {
    EXPECT_EQ(t.resident_bytes, 0u) << MemoryTagName(t.tag) << " still resident";
  }
  // The driver sees the memory back (other processes may allocate meanwhile:
  // allow 5%).
  EXPECT_GE(after.device_memory.free_bytes + freed / 20, before.device_memory.free_bytes + freed);

  GenerateSpec spec;
  spec.input_ids = Prompts()[0];
  spec.max_new_tokens = 4;
  spec.fail_if_unavailable = true;
  EXPECT_THAT(gpu->scheduler().Submit(spec).status(), StatusIs(absl::StatusCode::kUnavailable));

  ASSERT_OK(gpu->scheduler().Resume(AllMemoryTags()).status());
  EXPECT_THAT(gpu->scheduler().Submit(spec).status(), StatusIs(absl::StatusCode::kUnavailable))
      << "weights resumed without a backup must wait for an update";
  // No host master: a commit that writes nothing leaves every tensor stale.
  ASSERT_OK(gpu->scheduler().CommitWeights([] { return absl::OkStatus(); }, "v2", true));
  EXPECT_TRUE(gpu->scheduler().Snapshot().state.needs_weights);
  EXPECT_EQ(Runner(*gpu)->NumStaleWeights(),
            static_cast<int64_t>(cpu->weights().List().size()));
  ASSERT_OK(gpu->scheduler().CommitWeights(FullUpdate(gpu.get(), &cpu->weights()), "v3", true));
  EXPECT_FALSE(gpu->scheduler().Snapshot().state.needs_weights);
  EXPECT_EQ(gpu->scheduler().Snapshot().weight_version, "v3");
  const int64_t replays = Runner(*gpu)->graph_steps();
  const std::vector<Output> got = Generate(*gpu, Prompts(), 16);
  EXPECT_GE(ExpectAgree(before_release, got, "after release/resume/update", kBf16Tolerance),
            kPrompts * 16 / 2);
  EXPECT_EQ(Runner(*gpu)->num_graphs(), graphs) << "graphs were captured again";
  EXPECT_GT(Runner(*gpu)->graph_steps(), replays) << "graphs did not replay after resume";
}

// With --weights_host_backup, the tagged pool restores the device weights on
// resume: generation continues without an update, on the same graphs.
TEST(EngineRuntimeCudaTest, ReleaseResumeWithHostBackupKeepsWeights) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir("backup", FullModel());
  auto cpu = Cpu(dir);
  RuntimeFlags f;
  f.host_backup = true;
  auto gpu = StartRuntime(dir, f);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<Output> want = Generate(*cpu, Prompts(), 16);
  EXPECT_GE(ExpectAgree(want, Generate(*gpu, Prompts(), 16), "before"), kPrompts * 16 * 3 / 4);
  const int graphs = Runner(*gpu)->num_graphs();
  ASSERT_OK(gpu->scheduler().Release(AllMemoryTags()).status());
  ASSERT_OK(gpu->scheduler().Resume({MemoryTag::kWeights}).status());
  ASSERT_OK(gpu->scheduler().Resume({MemoryTag::kKvCache, MemoryTag::kCudaGraph}).status());
  EXPECT_FALSE(gpu->scheduler().Snapshot().state.needs_weights);
  const int64_t replays = Runner(*gpu)->graph_steps();
  EXPECT_GE(ExpectAgree(want, Generate(*gpu, Prompts(), 16), "host backup"),
            kPrompts * 16 * 3 / 4);
  EXPECT_EQ(Runner(*gpu)->num_graphs(), graphs);
  EXPECT_GT(Runner(*gpu)->graph_steps(), replays);
}

// A committed update (written into the host weights while it commits)
// reaches the GPU in the commit: both engines produce the new model's
// tokens. With and without a host master.
TEST(EngineRuntimeCudaTest, CommittedUpdateIsUploaded) {
  SKIP_WITHOUT_GPU();
  for (bool host_backup : {false, true}) {
    SCOPED_TRACE(host_backup ? "host master" : "no host master");
    const std::string dir = ModelDir(absl::StrCat("update", host_backup), FullModel());
    auto cpu = Cpu(dir);
    RuntimeFlags f;
    f.host_backup = host_backup;
    auto gpu = StartRuntime(dir, f);
    ASSERT_NE(cpu, nullptr);
    ASSERT_NE(gpu, nullptr);
    const std::vector<Output> old_tokens = Generate(*cpu, Prompts(), 16);
    // New final-norm weights with mixed signs: the argmax moves.
    auto apply_to = [](EngineRuntime* rt) {
      return [rt]() -> absl::Status {
        absl::StatusOr<WeightInfo> norm = rt->weights().Find("model.norm.weight");
        if (!norm.ok()) return norm.status();
        std::vector<float> v(norm->NumElements());
        for (size_t i = 0; i < v.size(); ++i) v[i] = (i % 3 == 0 ? -1.5f : 0.7f) + 0.01f * i;
        return rt->weights().Overwrite("model.norm.weight", TensorDtype::kF32, norm->shape,
                                       v.data(), v.size() * sizeof(float));
      };
    };
    ASSERT_OK(cpu->scheduler().CommitWeights(apply_to(cpu.get()), "v2", true));
    ASSERT_OK(gpu->scheduler().CommitWeights(apply_to(gpu.get()), "v2", true));
    EXPECT_FALSE(gpu->scheduler().Snapshot().state.needs_weights);
    const std::vector<Output> want = Generate(*cpu, Prompts(), 16);
    int changed = 0;
    for (size_t r = 0; r < want.size(); ++r) changed += want[r].tokens != old_tokens[r].tokens;
    ASSERT_GT(changed, 0) << "the update does not change the CPU's tokens: the test proves nothing";
    EXPECT_GE(ExpectAgree(want, Generate(*gpu, Prompts(), 16), "updated"), kPrompts * 16 * 3 / 4);
  }
}

// Checksums read the weights the GPU serves: without a host master they are
// copied back from the device (bf16 values of a bf16 checkpoint: exactly the
// CPU's).
TEST(EngineRuntimeCudaTest, HostWeightsViewEqualsTheDeviceWeights) {
  SKIP_WITHOUT_GPU();
  TinyModelOptions m = FullModel();
  m.dtype = TensorDtype::kBF16;
  const std::string dir = ModelDir("checksums", m);
  auto cpu = Cpu(dir);
  auto gpu = StartRuntime(dir, RuntimeFlags());
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  int64_t compared = 0;
  ASSERT_OK(gpu->scheduler().RunBetweenSteps("test", [&](bool resident) -> absl::Status {
    EXPECT_TRUE(resident);
    return gpu->runner().WithHostWeights([&](const ModelWeights& w) -> absl::Status {
      for (const WeightInfo& want : cpu->weights().List()) {
        absl::StatusOr<WeightInfo> got = w.Find(want.name);
        if (!got.ok()) return got.status();
        for (int64_t i = 0; i < want.NumElements(); ++i) {
          EXPECT_EQ(got->data[i], want.data[i]) << want.name << "[" << i << "]";
          ++compared;
        }
      }
      return absl::OkStatus();
    });
  }));
  EXPECT_GT(compared, 1000);
}

TEST(EngineRuntimeCudaTest, AutoPicksTheGpu) {
  SKIP_WITHOUT_GPU();
  RuntimeFlags f;
  f.device = "auto";
  auto rt = StartRuntime(ModelDir("auto", FullModel()), f);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->backend().kind(), "cuda");
  EXPECT_EQ(rt->dtypes().compute, kc::DType::kFloat32);  // the checkpoint's
  ASSERT_OK_AND_ASSIGN(MemoryInfo mem, rt->CollectMemory());
  EXPECT_EQ(mem.backend_kind, "cuda");
  EXPECT_GT(mem.device_memory.total_bytes, 0u);
}

TEST(EngineRuntimeCudaTest, DtypeFlagsAreResolvedAndChecked) {
  SKIP_WITHOUT_GPU();
  TinyModelOptions m = FullModel();
  m.dtype = TensorDtype::kBF16;
  const std::string dir = ModelDir("dtypes", m);
  {
    auto rt = StartRuntime(dir, RuntimeFlags());
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(rt->dtypes().compute, kc::DType::kBFloat16);
    EXPECT_EQ(rt->dtypes().kv_cache, kc::DType::kBFloat16);
  }
  {
    RuntimeFlags f;
    f.dtype = "float16";
    f.kv_cache_dtype = "fp8_e4m3";
    auto rt = StartRuntime(dir, f);
    ASSERT_NE(rt, nullptr);
    EXPECT_EQ(rt->dtypes().compute, kc::DType::kFloat16);
    EXPECT_EQ(rt->dtypes().kv_cache, kc::DType::kFp8E4M3);
  }
  EngineOptions o;
  o.model_dir = dir;
  o.device = "cuda";
  o.dtype = "bfloat16";
  o.kv_cache_dtype = "float16";
  o.kv_cache_bytes = int64_t{4} << 20;
  EXPECT_THAT(EngineRuntime::Create(o).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace colo::engine
