// TransformerModel: the batched forward pass of a decoder-only transformer
// (Llama / Mistral / Qwen2 / Qwen3 / Qwen3-MoE / GPT-OSS layout) on the CPU,
// over a paged KV cache. MoE layers run moe_cpu.h (tokens grouped by expert,
// one GEMM per active expert); gpt-oss attention adds its sinks.
//
// The scheduler calls Forward() with a batch of requests. Request r has
// `cached_len` tokens whose KV is already in the cache (positions
// 0..cached_len-1) and `new_tokens` at positions cached_len..; prefill,
// extend-over-a-cached-prefix and decode are the same call. For every
// position 0..cached_len+len(new_tokens)-1, `slots` gives the token's slot in
// the *full* KV pool (req_to_token row). Forward writes the new tokens' K/V at
// their slots (sliding layers: at full_to_swa[slot] in the SWA pool), attends
// causally (sliding layers: the last `sliding_window` positions only), and
// returns the next-token logits and/or a sampled token with its logprob for
// each request (from the last new token).
//
// The KV memory is described by KvCacheView (kvcache/kv_layout.h LayerKv per
// layer), so the model does not depend on the cache's bookkeeping classes.
//
// Determinism: each token's computation (GEMMs via kernels::Linear /
// kernels::MatMul, norms, attention per (token, head), MoE routing and the
// combine in ascending expert order, sampling with a counter-based RNG) does
// not depend on which other requests are in the batch or on threading, so a
// request produces bit-identical logits alone or in any batch.
//
// Transient buffers (activations) come from the CachingAllocator and are
// returned before Forward returns. Weights live in the TaggedPool `weights`
// tag (ModelWeights).
//
// Thread-compatible: one Forward at a time; weight overwrites must not run
// concurrently with Forward.
//
// Errors: INVALID_ARGUMENT for malformed batches (empty request, token out of
// vocabulary, slot lists too short, a slot outside its pool, an unmapped SWA
// slot inside the window, a KV view that does not match the config);
// RESOURCE_EXHAUSTED when transient memory cannot be allocated.
#ifndef COLO_ENGINE_MODEL_FORWARD_H_
#define COLO_ENGINE_MODEL_FORWARD_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "engine/model/tp_collectives.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cpu/thread_pool.h"
#include "kvcache/kv_layout.h"

namespace colo {
namespace engine {

// Where the KV cache lives. Not owned.
struct KvCacheView {
  // One per model layer; layers[i].sliding must match the config's layer
  // type; float32 only.
  std::vector<kvcache::LayerKv> layers;
  // Full slot -> SWA slot (kvcache::kNoSwaSlot when unmapped). Required when
  // the model has sliding layers.
  const int32_t* full_to_swa = nullptr;
  int64_t full_to_swa_size = 0;
  // Slots come in pages of this many (position i of a request lives at
  // pages[i / page_size] * page_size + i % page_size). The CPU forward reads
  // ForwardRequest::slots and ignores it; the CUDA forward uploads page lists.
  int32_t page_size = 1;
};

// Slot counts of a KV view's pools (-1 when the model has no such layer).
struct KvViewSlots {
  int64_t full = -1;
  int64_t swa = -1;
};

// Checks that `kv` matches `config` (one layer per model layer with the
// model's sliding flag, KV heads, head_dim and float32; a full_to_swa map
// when there are sliding layers) and returns the pools' slot counts.
// INVALID_ARGUMENT naming the mismatch. Shared by the CPU and CUDA forwards.
absl::StatusOr<KvViewSlots> ValidateKvView(const ModelConfig& config, const KvCacheView& kv);

struct ForwardRequest {
  int64_t cached_len = 0;
  absl::Span<const int32_t> new_tokens;  // at least one token
  // Full-pool slot of every position in [0, cached_len + new_tokens.size()).
  absl::Span<const int32_t> slots;
  // Optional (device runners only): the request's full-pool pages instead of
  // `slots` (ceil(positions / KvCacheView::page_size) entries), so the table
  // that travels to the device is the live part of the request's row. When
  // set, `slots` may be empty. The CPU forward requires `slots`.
  absl::Span<const int32_t> pages;
  kernels::SamplingParams sampling;
  // Index of this draw for the request's RNG (tokens generated so far).
  uint64_t sample_step = 0;
};

struct ForwardOptions {
  bool sample = true;          // fill ForwardResult::tokens
  bool return_logits = false;  // fill ForwardResult::logits
};

struct ForwardResult {
  std::vector<kernels::SampledToken> tokens;  // one per request
  std::vector<float> logits;                  // [num_requests][vocab]
};

// Tensor parallelism (engine/tp): the model holds one rank's shard. Its
// ModelConfig then has the rank's attention heads, KV heads and
// intermediate size, and vocab_size = the rows of the embedding and LM head
// it holds (full rows vocab_begin.., the last rank's padded with zero rows).
// Forward sums the vocab-parallel embedding over the ranks, all-reduces the
// outputs of the row-parallel o_proj and down_proj (rank 0 alone adds the
// o_proj bias) and all-gathers the LM head's logits, so every rank holds
// the full hidden states and the full logits. Every rank must call Forward
// with the same batch (and its own KV view, of its own KV heads).
struct TensorParallelShard {
  int rank = 0;
  int size = 1;  // 1: not sharded (the other fields are unused)
  int64_t full_vocab_size = 0;
  int64_t vocab_begin = 0;
  TpCollectives* collectives = nullptr;  // required when size > 1; not owned
};

class TransformerModel {
 public:
  struct Options {
    // Directory with config.json and model.safetensors (or an index).
    std::string model_dir;
    TaggedPool* weights_pool = nullptr;      // required; weights tag
    CachingAllocator* allocator = nullptr;   // required; activations
    kernels::ThreadPool* threads = nullptr;  // null = ThreadPool::Default()
  };

  // Loads config.json and the safetensors weights.
  static absl::StatusOr<std::unique_ptr<TransformerModel>> Load(
      const Options& options);
  // Wraps already-built weights (tests, weight-update paths).
  static absl::StatusOr<std::unique_ptr<TransformerModel>> Create(
      std::unique_ptr<ModelWeights> weights, CachingAllocator* allocator,
      kernels::ThreadPool* threads);

  const ModelConfig& config() const { return weights_->config(); }

  // Batch invariance (the default) runs every GEMM with kernels::Linear.
  // When false, dense GEMMs with more than one row use OpenBLAS (LinearBlas;
  // MoE experts always run the batch-invariant kernels):
  // faster prefill and large-batch decode, but a request's logits then
  // depend (in the last bits) on the batch it ran in. Not thread-safe with
  // Forward.
  void set_batch_invariant(bool on) { batch_invariant_ = on; }
  bool batch_invariant() const { return batch_invariant_; }
  ModelWeights& weights() { return *weights_; }
  // See TensorParallelShard. Not thread-safe with Forward.
  void set_tensor_parallel(const TensorParallelShard& shard) { tp_ = shard; }
  const TensorParallelShard& tensor_parallel() const { return tp_; }
  // The vocabulary tokens are checked against and logits cover (the full
  // model's, also on a tensor-parallel shard).
  int64_t vocab_size() const {
    return tp_.size > 1 ? tp_.full_vocab_size : config().vocab_size;
  }

  absl::StatusOr<ForwardResult> Forward(
      absl::Span<const ForwardRequest> batch, const KvCacheView& kv,
      const ForwardOptions& options = ForwardOptions());

 private:
  TransformerModel(std::unique_ptr<ModelWeights> weights,
                   CachingAllocator* allocator, kernels::ThreadPool* threads);
  absl::Status Validate(absl::Span<const ForwardRequest> batch,
                        const KvCacheView& kv) const;

  std::unique_ptr<ModelWeights> weights_;
  CachingAllocator* const allocator_;
  kernels::ThreadPool* const threads_;
  std::vector<double> inv_freq_;
  double rope_attention_scaling_ = 1.0;
  bool batch_invariant_ = true;
  TensorParallelShard tp_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_FORWARD_H_
