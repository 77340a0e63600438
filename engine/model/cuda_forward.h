// CudaTransformerModel: the batched forward pass of engine/model/forward.h on
// a GPU, built from the //kernels/cuda kernels and cuBLAS (fp32).
//
// Same contract as TransformerModel::Forward (prefill, extend over a cached
// prefix and decode in one call; per-layer sliding windows through
// full_to_swa; logits and/or a sampled token with its logprob per request),
// except that the KvCacheView points at *device* memory: every layer's k/v
// and the full_to_swa map. The CPU forward is the reference (see
// cuda_forward_test.cc); results agree within float rounding (cuBLAS sums in
// a different order), so greedy tokens agree except at near-ties.
//
// Memory: the weights are copied from a host ModelWeights into one allocation
// of the `weights` tag of `device_pool` (a TaggedPool over the CUDA backend),
// keeping ModelWeights' packing. Inputs, activations, logits, outputs and the
// cuBLAS workspace are fixed buffers of the `cuda_graph` tag, sized by
// Options (max tokens / requests / context), so their addresses never change
// and a step can be captured in a CUDA graph:
//   PrepareInputs(batch)  validates and uploads tokens, positions, the slot
//                         table and the RoPE cos/sin rows (not capturable);
//   EnqueueStep(shape)    queues the whole forward + greedy sampling on the
//                         stream, reading only device buffers (capturable;
//                         replayable after Release/Resume of both tags, with
//                         the weights restored from backup or re-sent);
//   ReadGreedy / Forward  copy the results back (synchronize the stream).
// UploadWeights copies a host ModelWeights with the same packing (e.g. the
// master copy after a weight update) over the device weights.
//
// Preconditions the host cannot check without reading device memory: every
// full_to_swa entry inside a sliding window is mapped (the KV cache
// guarantees it, as for the CPU forward).
//
// Thread-compatible: one call at a time. Errors: INVALID_ARGUMENT for a
// malformed batch (as TransformerModel) or one larger than Options;
// RESOURCE_EXHAUSTED / FAILED_PRECONDITION from the pool; CUDA errors name
// the kernel or call.
#ifndef COLO_ENGINE_MODEL_CUDA_FORWARD_H_
#define COLO_ENGINE_MODEL_CUDA_FORWARD_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "kernels/cuda/gemm.h"

namespace colo {
namespace engine {

class CudaTransformerModel {
 public:
  struct Options {
    // TaggedPool over the CUDA backend; must outlive the model. Required.
    TaggedPool* device_pool = nullptr;
    int64_t max_tokens = 256;    // new tokens per step (all requests)
    int64_t max_requests = 32;   // requests per step
    int64_t max_context = 2048;  // positions per request
  };

  // The shape of a prepared step.
  struct StepShape {
    int64_t num_tokens = 0;
    int64_t num_requests = 0;
  };

  // Copies `host_weights` to the device. UNAVAILABLE without a GPU.
  static absl::StatusOr<std::unique_ptr<CudaTransformerModel>> Create(
      const ModelWeights& host_weights, const Options& options);
  ~CudaTransformerModel();

  CudaTransformerModel(const CudaTransformerModel&) = delete;
  CudaTransformerModel& operator=(const CudaTransformerModel&) = delete;

  const ModelConfig& config() const { return config_; }
  // Bytes of weights on the device (what one decode step reads).
  size_t weight_bytes() const { return weight_bytes_; }

  // Copies `host_weights` (same config and packing as at Create: the same
  // ModelWeights after an update) to the device weights, in order on
  // `stream`, and synchronizes it. FAILED_PRECONDITION when the packing
  // differs; CUDA errors name the call. The `weights` tag must be resident.
  absl::Status UploadWeights(const ModelWeights& host_weights, cudaStream_t stream);

  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv,
                                        const ForwardOptions& options,
                                        cudaStream_t stream);

  absl::StatusOr<StepShape> PrepareInputs(absl::Span<const ForwardRequest> batch,
                                          const KvCacheView& kv,
                                          cudaStream_t stream);
  absl::Status EnqueueStep(const StepShape& shape, const KvCacheView& kv,
                           cudaStream_t stream);
  // Greedy token + logprob of each request of the last step.
  absl::StatusOr<std::vector<kernels::SampledToken>> ReadGreedy(
      const StepShape& shape, cudaStream_t stream);

 private:
  struct DeviceLayer {
    const float* input_norm;
    const float* qkv;
    const float* qkv_bias;
    const float* o;
    const float* o_bias;
    const float* q_norm;
    const float* k_norm;
    const float* post_norm;
    const float* gate_up;
    const float* down;
  };
  // Device buffers carved out of the cuda_graph allocation.
  struct Buffers {
    int32_t* tokens;      // [max_tokens]
    int64_t* positions;   // [max_tokens]
    int32_t* token_row;   // [max_tokens]
    int32_t* slot_table;  // [max_requests][max_context]
    int32_t* last_index;  // [max_requests]
    float* cos;           // [max_tokens][head_dim / 2]
    float* sin;
    float* hidden;        // [max_tokens][hidden]
    float* normed;        // [max_tokens][hidden]
    float* qkv;           // [max_tokens][q + 2 kv]
    float* attn;          // [max_tokens][q]
    float* gate_up;       // [max_tokens][2 inter]
    float* act;           // [max_tokens][inter]
    float* last;          // [max_requests][hidden]
    float* last_normed;   // [max_requests][hidden]
    float* logits;        // [max_requests][vocab]
    int32_t* out_tokens;  // [max_requests]
    float* out_logprobs;  // [max_requests]
    void* workspace;      // cuBLAS
    size_t workspace_bytes;
  };

  CudaTransformerModel(const ModelConfig& config, const Options& options);
  absl::Status Init(const ModelWeights& host_weights);
  absl::Status Validate(absl::Span<const ForwardRequest> batch,
                        const KvCacheView& kv) const;

  // Constant after construction.
  const ModelConfig config_;
  const Options options_;
  std::vector<double> inv_freq_;
  void* weights_ = nullptr;   // weights tag allocation
  size_t weight_bytes_ = 0;
  size_t embed_offset_ = 0;   // of the embedding in the packed weights
  void* graph_mem_ = nullptr;  // cuda_graph tag allocation
  std::vector<DeviceLayer> layers_;
  const float* embed_ = nullptr;
  const float* final_norm_ = nullptr;
  const float* lm_head_ = nullptr;
  Buffers buf_{};
  kernels::cuda::CublasHandle cublas_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_CUDA_FORWARD_H_
