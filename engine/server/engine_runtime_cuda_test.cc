// EngineRuntime with --device=cuda against --device=cpu, in process, on tiny
// models (full attention, and sliding-window + full layers with q/k norm):
// greedy tokens agree except at near-ties (checked by their logprobs, as in
// engine/model/cuda_forward_test.cc), seeded sampling agrees, release and
// resume of every tag really frees and restores device memory, weights
// released without a host backup need an update (and the commit re-uploads
// the host master weights), and a committed update reaches the GPU.
// --config=cuda only; skips (with the reason) where no GPU is usable.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/device/device_backend_factory.h"
#include "engine/model/tiny_model.h"
#include "engine/scheduler/read_to_end.h"
#include "engine/server/engine_runtime.h"
#include "gtest/gtest.h"
#include "kernels/cuda/cuda_status.h"
#include "tests/util/greedy_agreement.h"
#include "tests/util/status_matchers.h"

namespace colo::engine {
namespace {

constexpr int kVocab = 256;

std::string SkipReason() {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> b = CreateDeviceBackend("cuda");
  if (!b.ok()) return b.status().ToString();
  if (absl::Status s = kernels::cuda::CudaDeviceAvailable(); !s.ok()) return s.ToString();
  return "";
}

#define SKIP_WITHOUT_GPU()                                                      \
  do {                                                                          \
    const std::string reason = SkipReason();                                    \
    if (!reason.empty()) GTEST_SKIP() << "no usable CUDA device: " << reason;   \
  } while (0)

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

std::unique_ptr<EngineRuntime> StartRuntime(const std::string& model_dir,
                                            const std::string& device, bool host_backup) {
  EngineOptions o;
  o.model_dir = model_dir;
  o.device = device;
  o.page_size = 8;
  o.kv_cache_bytes = int64_t{16} << 20;
  o.max_running_requests = 16;
  o.max_batch_tokens = 256;
  o.chunked_prefill_size = 64;
  o.max_kv_rows = 32;
  o.cpu_threads = 2;
  o.weights_host_backup = host_backup;
  absl::StatusOr<std::unique_ptr<EngineRuntime>> rt = EngineRuntime::Create(o);
  EXPECT_OK(rt.status()) << device;
  return rt.ok() ? *std::move(rt) : nullptr;
}

std::vector<std::vector<int32_t>> Prompts() {
  std::vector<std::vector<int32_t>> p;
  for (int i = 0; i < 6; ++i) p.push_back(TinyPrompt(i, 5 + 13 * i, kVocab));  // 5 .. 70 tokens
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
    spec.sampling.top_k = temperature > 0 ? 40 : 0;
    spec.sampling.top_p = temperature > 0 ? 0.9f : 1.0f;
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
                const std::string& what) {
  int matched = 0;
  EXPECT_EQ(want.size(), got.size()) << what;
  for (size_t r = 0; r < want.size() && r < got.size(); ++r) {
    EXPECT_OK(want[r].error) << what << " request " << r;
    EXPECT_OK(got[r].error) << what << " request " << r;
    matched += test_util::ExpectAgreeUpToNearTie(want[r].tokens, want[r].logprobs, got[r].tokens,
                                                 got[r].logprobs,
                                                 absl::StrCat(what, " request ", r));
  }
  return matched;
}

void CheckGreedyParity(const std::string& name, const TinyModelOptions& model) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir(name, model);
  auto cpu = StartRuntime(dir, "cpu", false);
  auto gpu = StartRuntime(dir, "cuda", false);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(gpu->backend().kind(), "cuda");
  EXPECT_EQ(gpu->runner().device_kind(), "cuda");
  const std::vector<Output> want = Generate(*cpu, Prompts(), 32);
  const std::vector<Output> got = Generate(*gpu, Prompts(), 32);
  const int matched = ExpectAgree(want, got, name);
  // Near-ties are rare on these models: most positions must match, or the
  // comparison above proved little.
  EXPECT_GE(matched, 6 * 32 * 3 / 4) << name;
}

TEST(EngineRuntimeCudaTest, GreedyMatchesCpuFullAttention) {
  CheckGreedyParity("full", FullModel());
}

TEST(EngineRuntimeCudaTest, GreedyMatchesCpuSlidingWindowQkNorm) {
  CheckGreedyParity("sliding", SlidingModel());
}

// Non-greedy requests sample on the host from the device's logits with the
// CPU sampler: the same seed gives the same tokens (unless a logit's
// rounding moves a draw across a boundary: checked like a near-tie).
TEST(EngineRuntimeCudaTest, SeededSamplingMatchesCpu) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir("sampled", FullModel());
  auto cpu = StartRuntime(dir, "cpu", false);
  auto gpu = StartRuntime(dir, "cuda", false);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<Output> want = Generate(*cpu, Prompts(), 24, 0.8f);
  const std::vector<Output> got = Generate(*gpu, Prompts(), 24, 0.8f);
  const int matched = ExpectAgree(want, got, "sampled");
  EXPECT_GE(matched, 6 * 24 * 3 / 4);
}

// Releases every tag: device memory comes back to the driver; generation is
// refused; after resume without a weights backup the engine needs an update,
// and committing one (the host master weights, unchanged) re-uploads them.
TEST(EngineRuntimeCudaTest, ReleaseResumeAllTagsThenCommitRestoresWeights) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir("release", SlidingModel());
  auto cpu = StartRuntime(dir, "cpu", false);
  auto gpu = StartRuntime(dir, "cuda", false);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<Output> want = Generate(*cpu, Prompts(), 16);

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
  ASSERT_OK(gpu->scheduler().CommitWeights([] { return absl::OkStatus(); }, "v2",
                                           /*flush_cache=*/true));
  EXPECT_EQ(gpu->scheduler().Snapshot().weight_version, "v2");
  const std::vector<Output> got = Generate(*gpu, Prompts(), 16);
  EXPECT_GE(ExpectAgree(want, got, "after release/resume/commit"), 6 * 16 * 3 / 4);
}

// With --weights_host_backup, the tagged pool restores the device weights on
// resume: generation continues without an update.
TEST(EngineRuntimeCudaTest, ReleaseResumeWithHostBackupKeepsWeights) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir("backup", FullModel());
  auto cpu = StartRuntime(dir, "cpu", false);
  auto gpu = StartRuntime(dir, "cuda", /*host_backup=*/true);
  ASSERT_NE(cpu, nullptr);
  ASSERT_NE(gpu, nullptr);
  const std::vector<Output> want = Generate(*cpu, Prompts(), 16);
  ASSERT_OK(gpu->scheduler().Release(AllMemoryTags()).status());
  ASSERT_OK(gpu->scheduler().Resume({MemoryTag::kWeights}).status());
  ASSERT_OK(gpu->scheduler().Resume({MemoryTag::kKvCache, MemoryTag::kCudaGraph}).status());
  EXPECT_FALSE(gpu->scheduler().Snapshot().state.needs_weights);
  EXPECT_GE(ExpectAgree(want, Generate(*gpu, Prompts(), 16), "host backup"), 6 * 16 * 3 / 4);
}

// A committed update (written into the host master weights) reaches the GPU
// in the commit: both engines produce the new model's tokens.
TEST(EngineRuntimeCudaTest, CommittedUpdateIsUploaded) {
  SKIP_WITHOUT_GPU();
  const std::string dir = ModelDir("update", FullModel());
  auto cpu = StartRuntime(dir, "cpu", false);
  auto gpu = StartRuntime(dir, "cuda", false);
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
  const std::vector<Output> want = Generate(*cpu, Prompts(), 16);
  int changed = 0;
  for (size_t r = 0; r < want.size(); ++r) changed += want[r].tokens != old_tokens[r].tokens;
  ASSERT_GT(changed, 0) << "the update does not change the CPU's tokens: the test proves nothing";
  EXPECT_GE(ExpectAgree(want, Generate(*gpu, Prompts(), 16), "updated"), 6 * 16 * 3 / 4);
}

TEST(EngineRuntimeCudaTest, AutoPicksTheGpu) {
  SKIP_WITHOUT_GPU();
  auto rt = StartRuntime(ModelDir("auto", FullModel()), "auto", false);
  ASSERT_NE(rt, nullptr);
  EXPECT_EQ(rt->backend().kind(), "cuda");
  ASSERT_OK_AND_ASSIGN(MemoryInfo m, rt->CollectMemory());
  EXPECT_EQ(m.backend_kind, "cuda");
  EXPECT_GT(m.device_memory.total_bytes, 0u);
}

}  // namespace
}  // namespace colo::engine
