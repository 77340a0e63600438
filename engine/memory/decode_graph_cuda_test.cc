// A decode step captured in a CUDA graph on TaggedPool memory survives a
// release + resume of the buffers it was captured on (issue 3):
//
//   embedding -> RMSNorm -> GEMM -> residual -> RMSNorm -> lm_head GEMM ->
//   greedy token + logprob
//
// on a tiny random model whose weights live in the `weights` tag (host backup
// policy) and whose activations, token inputs, outputs and cuBLAS workspace
// live in the `cuda_graph` tag. The graph is replayed, both tags are released
// (the driver's free memory must rise by >= 99% of the bytes freed), the
// freed memory is scribbled over through an unrelated allocation, both tags
// are resumed at the same addresses, and the graph replays to bit-identical
// logits, tokens and logprobs. The result is also checked against the CPU
// kernels. Skips (with the reason) without a GPU.
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/device/device_backend.h"
#include "engine/device/device_backend_factory.h"
#include "engine/memory/tagged_pool.h"
#include "gtest/gtest.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rms_norm.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/device_array.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/embedding.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/test_util.h"
#include "tests/util/status_matchers.h"

namespace colo {
namespace engine {
namespace {

namespace kc = ::colo::kernels::cuda;

constexpr int64_t kVocab = 512;
constexpr int64_t kHidden = 256;
constexpr int64_t kBatch = 4;
constexpr float kEps = 1e-6f;
constexpr size_t kWorkspaceBytes = size_t{32} << 20;

// Offsets (in floats) of the tiny model's tensors in one weights allocation.
struct WeightLayout {
  int64_t embed = 0;                               // [V][H]
  int64_t norm1 = embed + kVocab * kHidden;        // [H]
  int64_t w1 = norm1 + kHidden;                    // [H][H]
  int64_t final_norm = w1 + kHidden * kHidden;     // [H]
  int64_t lm_head = final_norm + kHidden;          // [V][H]
  int64_t total = lm_head + kVocab * kHidden;
};

// Activation / IO buffers carved out of one cuda_graph allocation.
struct GraphBuffers {
  int32_t* tokens_in;   // [B]
  float* hidden;        // [B][H]
  float* normed;        // [B][H]
  float* mlp;           // [B][H]
  float* logits;        // [B][V]
  int32_t* tokens_out;  // [B]
  float* logprobs;      // [B]
  static size_t Bytes() {
    return sizeof(float) * (3 * kBatch * kHidden + kBatch * kVocab + kBatch) +
           sizeof(int32_t) * 2 * kBatch;
  }
  static GraphBuffers Carve(void* base) {
    GraphBuffers b;
    float* f = static_cast<float*>(base);
    b.hidden = f;
    b.normed = b.hidden + kBatch * kHidden;
    b.mlp = b.normed + kBatch * kHidden;
    b.logits = b.mlp + kBatch * kHidden;
    b.logprobs = b.logits + kBatch * kVocab;
    b.tokens_in = reinterpret_cast<int32_t*>(b.logprobs + kBatch);
    b.tokens_out = b.tokens_in + kBatch;
    return b;
  }
};

struct StepOutput {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// The decode step, queued on `stream`.
absl::Status DecodeStep(const float* w, const WeightLayout& L, const GraphBuffers& b,
                        kc::Gemm& gemm, cudaStream_t stream) {
  constexpr kc::DType kF32 = kc::DType::kFloat32;
  if (auto s = kc::EmbeddingLookup(w + L.embed, kF32, kVocab, kHidden, b.tokens_in, kBatch,
                                   b.hidden, stream);
      !s.ok()) {
    return s;
  }
  if (auto s = kc::RmsNorm(b.hidden, kBatch, kHidden, w + L.norm1, kEps, b.normed, kF32, stream);
      !s.ok()) {
    return s;
  }
  if (auto s = gemm.Linear(b.normed, kBatch, kHidden, w + L.w1, kHidden, nullptr, b.mlp, kF32,
                           kF32, stream);
      !s.ok()) {
    return s;
  }
  if (auto s = kc::AddInPlace(b.hidden, b.mlp, kBatch * kHidden, kF32, stream); !s.ok()) {
    return s;
  }
  if (auto s = kc::RmsNorm(b.hidden, kBatch, kHidden, w + L.final_norm, kEps, b.normed, kF32,
                           stream);
      !s.ok()) {
    return s;
  }
  if (auto s = gemm.Linear(b.normed, kBatch, kHidden, w + L.lm_head, kVocab, nullptr, b.logits,
                           kF32, kF32, stream);
      !s.ok()) {
    return s;
  }
  return kc::GreedySample(b.logits, kBatch, kVocab, b.tokens_out, b.logprobs, stream);
}

absl::Status WriteTokens(const GraphBuffers& b, const std::vector<int32_t>& tokens,
                         cudaStream_t stream) {
  return kc::StreamCopyToDevice(b.tokens_in, tokens.data(), tokens.size() * sizeof(int32_t),
                                stream);
}

absl::StatusOr<StepOutput> ReadOutput(const GraphBuffers& b, cudaStream_t stream) {
  StepOutput out;
  out.logits.resize(kBatch * kVocab);
  out.tokens.resize(kBatch);
  out.logprobs.resize(kBatch);
  if (auto s = kc::StreamCopyToHost(out.logits.data(), b.logits,
                                    out.logits.size() * sizeof(float), stream);
      !s.ok()) {
    return s;
  }
  if (auto s = kc::StreamCopyToHost(out.tokens.data(), b.tokens_out, kBatch * sizeof(int32_t),
                                    stream);
      !s.ok()) {
    return s;
  }
  if (auto s = kc::StreamCopyToHost(out.logprobs.data(), b.logprobs, kBatch * sizeof(float),
                                    stream);
      !s.ok()) {
    return s;
  }
  return out;
}

// The same step with the CPU kernels.
StepOutput CpuStep(const std::vector<float>& w, const WeightLayout& L,
                   const std::vector<int32_t>& tokens) {
  kernels::ThreadPool pool(1);
  std::vector<float> hidden(kBatch * kHidden), normed(kBatch * kHidden),
      mlp(kBatch * kHidden);
  StepOutput out;
  out.logits.resize(kBatch * kVocab);
  EXPECT_TRUE(kernels::EmbeddingLookup(&w[L.embed], kVocab, kHidden, tokens.data(),
                                       kBatch, hidden.data()));
  kernels::RmsNorm(hidden.data(), kBatch, kHidden, &w[L.norm1], kEps, normed.data());
  kernels::Linear(normed.data(), kBatch, kHidden, &w[L.w1], kHidden, nullptr,
                  mlp.data(), &pool);
  for (int64_t i = 0; i < kBatch * kHidden; ++i) hidden[i] += mlp[i];
  kernels::RmsNorm(hidden.data(), kBatch, kHidden, &w[L.final_norm], kEps, normed.data());
  kernels::Linear(normed.data(), kBatch, kHidden, &w[L.lm_head], kVocab, nullptr,
                  out.logits.data(), &pool);
  for (int64_t r = 0; r < kBatch; ++r) {
    const kernels::SampledToken t = kernels::SampleToken(
        &out.logits[r * kVocab], kVocab, kernels::SamplingParams(), 0);
    out.tokens.push_back(t.token);
    out.logprobs.push_back(t.logprob);
  }
  return out;
}

// Fills `bytes` of device memory with a pattern through a fresh allocation,
// so that physical pages just released by the pool hold garbage if the
// driver hands them out again.
void ScribbleFreeMemory(size_t bytes) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    cudaGetLastError();
    return;  // best effort: nothing to scribble on
  }
  EXPECT_EQ(cudaMemset(p, 0xA5, bytes), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
}

TEST(DecodeGraphCudaTest, GraphOnTaggedBuffersReplaysIdenticallyAfterReleaseResume) {
  absl::StatusOr<std::unique_ptr<DeviceBackend>> backend = CreateDeviceBackend("cuda");
  COLO_SKIP_OR_FAIL_WITHOUT_GPU(backend.status());
  COLO_SKIP_WITHOUT_GPU();
  DeviceBackend& cuda = **backend;

  TaggedPool::Options options;
  options.backend = &cuda;
  options.backup[static_cast<int>(MemoryTag::kWeights)] = BackupPolicy::kHostCopy;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<TaggedPool> pool, TaggedPool::Create(options));

  const WeightLayout L;
  std::vector<float> weights = kc::testing::RandomFloats(L.total, 2024, -0.5f, 0.5f);
  for (int64_t i = 0; i < kHidden; ++i) {
    weights[L.norm1 + i] = 1.0f + 0.01f * (i % 7);
    weights[L.final_norm + i] = 1.0f - 0.01f * (i % 5);
  }
  ASSERT_OK_AND_ASSIGN(void* w_ptr, pool->Allocate(MemoryTag::kWeights,
                                                   L.total * sizeof(float), "tiny model"));
  ASSERT_OK_AND_ASSIGN(kc::CudaStream stream, kc::CudaStream::Create());
  ASSERT_OK(kc::StreamCopyToDevice(w_ptr, weights.data(), L.total * sizeof(float), stream.get()));
  ASSERT_OK_AND_ASSIGN(void* act_ptr, pool->Allocate(MemoryTag::kCudaGraph,
                                                     GraphBuffers::Bytes(), "decode io"));
  ASSERT_OK_AND_ASSIGN(void* ws_ptr, pool->Allocate(MemoryTag::kCudaGraph, kWorkspaceBytes,
                                                    "cublas workspace"));
  const float* w = static_cast<const float*>(w_ptr);
  const GraphBuffers b = GraphBuffers::Carve(act_ptr);

  ASSERT_OK_AND_ASSIGN(kc::Gemm gemm, kc::Gemm::Create());
  ASSERT_OK(gemm.SetWorkspace(ws_ptr, kWorkspaceBytes));

  const std::vector<int32_t> tokens = {3, 511, 42, 0};
  // Eager warm-up (loads modules, picks cuBLAS kernels) and reference.
  ASSERT_OK(WriteTokens(b, tokens, stream.get()));
  ASSERT_OK(DecodeStep(w, L, b, gemm, stream.get()));
  ASSERT_OK_AND_ASSIGN(StepOutput eager, ReadOutput(b, stream.get()));

  ASSERT_OK_AND_ASSIGN(kc::CudaGraph graph,
                       kc::CudaGraph::Capture(stream.get(), [&] {
                         return DecodeStep(w, L, b, gemm, stream.get());
                       }));
  ASSERT_OK(WriteTokens(b, tokens, stream.get()));
  ASSERT_OK(graph.Replay(stream.get()));
  ASSERT_OK_AND_ASSIGN(StepOutput first, ReadOutput(b, stream.get()));

  // The graph computes the step: same as eager, and as the CPU kernels.
  EXPECT_EQ(first.tokens, eager.tokens);
  kc::testing::ExpectAllNear(first.logits, eager.logits, 1e-5f, 1e-5f);
  const StepOutput cpu = CpuStep(weights, L, tokens);
  kc::testing::ExpectAllNear(first.logits, cpu.logits, 1e-4f, 1e-4f);
  for (int64_t r = 0; r < kBatch; ++r) {
    // Compare tokens where the CPU's top-2 margin is clear of rounding.
    std::vector<float> row(cpu.logits.begin() + r * kVocab,
                           cpu.logits.begin() + (r + 1) * kVocab);
    std::sort(row.begin(), row.end(), std::greater<float>());
    if (row[0] - row[1] > 1e-3f) {
      EXPECT_EQ(first.tokens[r], cpu.tokens[r]) << r;
    }
    EXPECT_NEAR(first.logprobs[r], cpu.logprobs[r], 1e-4f) << r;
  }

  // Release both tags: the driver sees the memory come back.
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo before, cuda.MemoryInfo());
  ASSERT_OK_AND_ASSIGN(ReleaseReport released,
                       pool->Release({MemoryTag::kWeights, MemoryTag::kCudaGraph}));
  ASSERT_OK_AND_ASSIGN(DeviceMemoryInfo after, cuda.MemoryInfo());
  uint64_t freed = 0;
  for (const TagReleaseReport& t : released.tags) {
    EXPECT_FALSE(t.no_op) << MemoryTagName(t.tag);
    freed += t.bytes_freed;
  }
  const uint64_t expected = *pool->AllocationSize(w_ptr) + *pool->AllocationSize(act_ptr) +
                            *pool->AllocationSize(ws_ptr);
  EXPECT_EQ(freed, expected);
  EXPECT_GE(after.free_bytes, before.free_bytes + freed * 99 / 100)
      << "driver free " << before.free_bytes << " -> " << after.free_bytes
      << " after releasing " << freed << " bytes";
  EXPECT_TRUE(pool->IsReleased(MemoryTag::kWeights));
  EXPECT_TRUE(pool->IsReleased(MemoryTag::kCudaGraph));
  ScribbleFreeMemory(freed);

  // Resume at the same addresses (weights restored from the host backup) and
  // replay the same graph.
  ASSERT_OK_AND_ASSIGN(ResumeReport resumed,
                       pool->Resume({MemoryTag::kWeights, MemoryTag::kCudaGraph}));
  for (const TagResumeReport& t : resumed.tags) {
    EXPECT_FALSE(t.no_op) << MemoryTagName(t.tag);
    if (t.tag == MemoryTag::kWeights) {
      EXPECT_EQ(t.bytes_restored, *pool->AllocationSize(w_ptr));
    }
  }
  std::vector<float> restored(L.total);
  ASSERT_OK(kc::StreamCopyToHost(restored.data(), w_ptr, L.total * sizeof(float), stream.get()));
  EXPECT_EQ(restored, weights);
  // The cuda_graph tag has no backup: its content is undefined, so the inputs
  // are written again (as the engine does before every replay).
  ASSERT_OK(WriteTokens(b, tokens, stream.get()));
  ASSERT_OK(graph.Replay(stream.get()));
  ASSERT_OK_AND_ASSIGN(StepOutput second, ReadOutput(b, stream.get()));
  EXPECT_EQ(second.tokens, first.tokens);
  EXPECT_EQ(second.logprobs, first.logprobs);
  EXPECT_EQ(second.logits, first.logits);  // bit-identical replay

  // A second cycle behaves the same.
  ASSERT_OK(pool->Release({MemoryTag::kWeights, MemoryTag::kCudaGraph}).status());
  ASSERT_OK(pool->Resume({MemoryTag::kWeights, MemoryTag::kCudaGraph}).status());
  ASSERT_OK(WriteTokens(b, tokens, stream.get()));
  ASSERT_OK(graph.Replay(stream.get()));
  ASSERT_OK_AND_ASSIGN(StepOutput third, ReadOutput(b, stream.get()));
  EXPECT_EQ(third.logits, first.logits);
}

}  // namespace
}  // namespace engine
}  // namespace colo
