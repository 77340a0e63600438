// CudaTransformerModel: the batched forward pass of engine/model/forward.h on
// a GPU, in float32, float16 or bfloat16 (Options::dtype: weights and
// activations; fp32 accumulation everywhere), with a KV cache of that dtype
// or fp8 e4m3 (Options::kv_dtype), built from the //kernels/cuda kernels and
// cuBLASLt.
//
// Same contract as TransformerModel::Forward (prefill, extend over a cached
// prefix and decode in one call; per-layer sliding windows through
// full_to_swa; logits and/or a sampled token with its logprob per request),
// except that the KvCacheView points at *device* memory (every layer's k/v of
// kv_dtype and the full_to_swa map) and requests may give their page lists
// (ForwardRequest::pages) instead of slots. The CPU forward is the reference
// (cuda_forward_test.cc): float32 agrees within float rounding, bf16/fp16
// within their rounding, so greedy tokens agree except at near-ties.
//
// Memory:
//   weights   one allocation of the `weights` tag of `device_pool`: the host
//             ModelWeights' packing (same element offsets) in `dtype`, plus
//             the model's constants (RoPE inverse frequencies). Uploads
//             convert from the host's float32 through pinned staging on the
//             stream (UploadWeights: everything; UploadTensors: the named
//             tensors); every upload also rewrites the constants, so a
//             `weights` tag resumed without backup is whole again after a
//             full update.
//   buffers   one allocation of the `cuda_graph` tag sized by Options (max
//             tokens / requests / context): the step's inputs region, the
//             activations, fp32 logits, the sampler's outputs, the split-K
//             workspace and the cuBLASLt workspace. Their addresses never
//             change, so a step can be captured in a CUDA graph and replayed
//             after Release/Resume of the tags.
//   pinned    host staging for the step's inputs and results (page-locked,
//             not part of any tag).
//
// A step:
//   PrepareInputs(batch, kv, pad_to)  validates and packs the batch on the
//       host (cuda_step_inputs.h: tokens, positions, the live part of every
//       request's page table, prefill tiles, decode items, sampling
//       parameters) and queues ONE cudaMemcpyAsync of the used bytes from
//       pinned memory on the stream (not capturable);
//   EnqueueStep(plan, kv)  queues the whole forward and the sampler on the
//       stream, reading only device buffers (capturable when the plan is a
//       padded decode batch: PrepareInputs with pad_to = the graph bucket);
//   ReadResults(plan, batch)  copies the sampled tokens and logprobs back
//       (one small copy), then samples on the host the rows the device
//       flagged (sampling_plan.h: kSampleHost rows, or a nucleus beyond the
//       device's candidates) from a copy of their logits with
//       kernels::SampleToken.
// Forward() runs the three eagerly (and copies the logits when asked).
//
// Preconditions the host cannot check without reading device memory: every
// full_to_swa entry inside a sliding window is mapped (the KV cache
// guarantees it, as for the CPU forward).
//
// Thread-compatible: one call at a time, on a thread whose current device is
// the pool's (CudaModelRunner sets it). Errors: INVALID_ARGUMENT for a
// malformed batch or one beyond Options; RESOURCE_EXHAUSTED /
// FAILED_PRECONDITION from the pool; CUDA errors name the kernel or call.
#ifndef COLO_ENGINE_MODEL_CUDA_FORWARD_H_
#define COLO_ENGINE_MODEL_CUDA_FORWARD_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/cuda_step_inputs.h"
#include "engine/model/forward.h"
#include "engine/model/model_config.h"
#include "engine/model/model_weights.h"
#include "kernels/cuda/dtype.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/pinned_buffer.h"

namespace colo {
namespace engine {

class CudaTransformerModel {
 public:
  struct Options {
    // TaggedPool over the CUDA backend; must outlive the model. Required.
    TaggedPool* device_pool = nullptr;
    kernels::cuda::DType dtype = kernels::cuda::DType::kFloat32;
    // The compute dtype or kFp8E4M3; the KV view's layers must have it.
    kernels::cuda::DType kv_dtype = kernels::cuda::DType::kFloat32;
    int64_t max_tokens = 256;    // new tokens per step (all requests)
    int64_t max_requests = 32;   // requests per step
    int64_t max_context = 2048;  // positions per request
    int32_t page_size = 1;       // the KV view's page size
  };

  // Copies `host_weights` to the device (converted to Options::dtype) on
  // `stream`. UNAVAILABLE without a GPU; INVALID_ARGUMENT for unsupported
  // shapes or dtypes.
  static absl::StatusOr<std::unique_ptr<CudaTransformerModel>> Create(
      const ModelWeights& host_weights, const Options& options, cudaStream_t stream);
  ~CudaTransformerModel();

  CudaTransformerModel(const CudaTransformerModel&) = delete;
  CudaTransformerModel& operator=(const CudaTransformerModel&) = delete;

  const ModelConfig& config() const { return config_; }
  const Options& options() const { return options_; }
  // Bytes of weights on the device (what one decode step reads, but for
  // the embedding rows not used).
  size_t weight_bytes() const { return weight_bytes_; }

  // Copies every tensor of `host_weights` (same config and packing as at
  // Create), and the constants, to the device on `stream`, and synchronizes
  // it. FAILED_PRECONDITION when the packing differs; CUDA errors name the
  // call. The `weights` tag must be resident.
  absl::Status UploadWeights(const ModelWeights& host_weights, cudaStream_t stream);
  // The same for the named tensors only (plus the constants). NOT_FOUND for
  // an unknown name.
  absl::Status UploadTensors(const ModelWeights& host_weights,
                             absl::Span<const std::string> names, cudaStream_t stream);
  // Copies the device weights into `host_weights` as float32 (what the
  // forward reads, e.g. bf16 values), synchronously.
  absl::Status DownloadWeights(ModelWeights* host_weights, cudaStream_t stream);

  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv, const ForwardOptions& options,
                                        cudaStream_t stream);

  // pad_to: 0, or the graph bucket a decode-only batch is padded to (its
  // decode splits are then chosen for max_context, so the captured grid
  // serves any length).
  absl::StatusOr<StepPlan> PrepareInputs(absl::Span<const ForwardRequest> batch,
                                         const KvCacheView& kv, int32_t pad_to,
                                         cudaStream_t stream);
  absl::Status EnqueueStep(const StepPlan& plan, const KvCacheView& kv, cudaStream_t stream);
  // Token + logprob of each real request of the last step (synchronizes).
  absl::StatusOr<std::vector<kernels::SampledToken>> ReadResults(
      const StepPlan& plan, absl::Span<const ForwardRequest> batch, cudaStream_t stream);

 private:
  struct DeviceLayer {
    const void* input_norm;
    const void* qkv;
    const void* qkv_bias;
    const void* o;
    const void* o_bias;
    const void* q_norm;
    const void* k_norm;
    const void* post_norm;
    const void* gate_up;
    const void* down;
  };
  // Device buffers carved out of the cuda_graph allocation.
  struct Buffers {
    char* inputs;         // StepLayout::total bytes
    float* cos;           // [max_tokens][head_dim / 2]
    float* sin;
    void* hidden;         // [max_tokens][hidden] (dtype, like the rest)
    void* normed;         // [max_tokens][hidden]
    void* qkv;            // [max_tokens][q + 2 kv]
    void* attn;           // [max_tokens][q]
    void* gate_up;        // [max_tokens][2 inter]
    void* act;            // [max_tokens][inter]
    void* last;           // [max_requests][hidden]
    void* last_normed;    // [max_requests][hidden]
    float* logits;        // [max_requests][vocab]
    int32_t* out;         // [3][max_requests]: tokens, logprob bits, host flags
    float* decode_ws;     // split-K partials
    size_t decode_ws_floats;
    void* gemm_ws;        // cuBLASLt
    size_t gemm_ws_bytes;
  };

  CudaTransformerModel(const ModelConfig& config, const Options& options);
  absl::Status Init(const ModelWeights& host_weights, cudaStream_t stream);
  // Converts host float ranges [offset, offset + count) (in floats from the
  // packed span's start) to the device weights, and the constants.
  absl::Status UploadRanges(const ModelWeights& host_weights,
                            const std::vector<std::pair<size_t, size_t>>& ranges,
                            cudaStream_t stream);
  absl::StatusOr<const char*> CheckPacking(const ModelWeights& host_weights) const;
  int32_t DecodeSplits(int32_t items, int32_t max_keys) const;

  // Constant after construction.
  const ModelConfig config_;
  const Options options_;
  const StepLimits limits_;
  const StepLayout layout_;
  std::vector<float> inv_freq_;
  int num_sms_ = 0;
  size_t elem_bytes_ = 4;      // of options_.dtype
  void* weights_ = nullptr;    // weights tag allocation
  size_t weight_bytes_ = 0;    // packed weights (device dtype)
  size_t host_span_bytes_ = 0;  // the host packing's span (float32)
  size_t embed_offset_ = 0;    // of the embedding in the host packing (bytes)
  float* inv_freq_dev_ = nullptr;  // constants after the weights
  void* graph_mem_ = nullptr;  // cuda_graph tag allocation
  std::vector<DeviceLayer> layers_;
  const void* embed_ = nullptr;
  const void* final_norm_ = nullptr;
  const void* lm_head_ = nullptr;
  Buffers buf_{};
  kernels::cuda::Gemm gemm_;
  // Pinned staging: the step's inputs, its results, one row of logits.
  kernels::cuda::PinnedBuffer inputs_pinned_;
  kernels::cuda::PinnedBuffer results_pinned_;
  kernels::cuda::PinnedBuffer row_pinned_;
  // Recorded after each inputs upload; waited on before the staging is
  // rewritten.
  cudaEvent_t inputs_uploaded_ = nullptr;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_CUDA_FORWARD_H_
