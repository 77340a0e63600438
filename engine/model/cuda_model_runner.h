// CudaModelRunner: the ModelRunner over CudaTransformerModel, running every
// step on its own non-blocking CUDA stream. --config=cuda only.
//
// Weights: `host_weights` (a ModelWeights in host memory) is the master copy;
// Create() copies it into the `weights` tag of `device_pool`, and
// WeightsCommitted() copies it again after a weight update wrote it (the
// whole packed buffer: one host-to-device copy, synchronous).
//
// Sampling: CudaTransformerModel::Forward picks greedy tokens on the device
// (argmax, lowest index among equals; logprob = logit - logsumexp in double,
// the CPU formula). Any non-greedy request (temperature, top-k, top-p, seed)
// makes it copy that step's logits to the host and sample every row with
// kernels::SampleToken, the CPU sampler itself, so seeded sampling and the
// filters behave exactly as on the CPU given the logits (which agree with
// the CPU forward within float rounding).
//
// Ordering: the KV cache writes its tables (full_to_swa) with synchronous
// driver copies on the legacy default stream; each Forward makes the
// runner's stream wait for that stream first, so a step never reads a table
// whose copy is still in flight.
//
// Thread-compatible (see ModelRunner). host_weights and device_pool must
// outlive the runner.
#ifndef COLO_ENGINE_MODEL_CUDA_MODEL_RUNNER_H_
#define COLO_ENGINE_MODEL_CUDA_MODEL_RUNNER_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/cuda_forward.h"
#include "engine/model/model_runner.h"
#include "engine/model/model_weights.h"
#include "kernels/cuda/cuda_stream.h"

namespace colo {
namespace engine {

class CudaModelRunner : public ModelRunner {
 public:
  struct Options {
    const ModelWeights* host_weights = nullptr;  // required, not owned
    TaggedPool* device_pool = nullptr;           // required: over the CUDA backend
    // Limits of one step (fixed cuda_graph buffers are sized by them).
    int64_t max_tokens = 2048;   // new tokens of all requests
    int64_t max_requests = 64;   // requests
    int64_t max_context = 2048;  // positions per request
  };

  // UNAVAILABLE without a usable GPU; INVALID_ARGUMENT for missing
  // pointers or bad limits; RESOURCE_EXHAUSTED from the pool.
  static absl::StatusOr<std::unique_ptr<CudaModelRunner>> Create(const Options& options);
  ~CudaModelRunner() override;
  CudaModelRunner(const CudaModelRunner&) = delete;
  CudaModelRunner& operator=(const CudaModelRunner&) = delete;

  const ModelConfig& config() const override { return model_->config(); }
  absl::string_view device_kind() const override { return "cuda"; }
  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv,
                                        const ForwardOptions& options) override;
  // Re-uploads the host master weights (FAILED_PRECONDITION when their
  // packing no longer matches the device copy; CUDA errors name the call).
  absl::Status WeightsCommitted() override;
  // The device copy is rewritten whole from the host master (never
  // released) at the next WeightsCommitted(): nothing goes stale.
  void WeightsDiscarded() override {}
  int64_t NumStaleWeights() const override { return 0; }

 private:
  explicit CudaModelRunner(const Options& options) : options_(options) {}

  const Options options_;
  kernels::cuda::CudaStream stream_;
  cudaEvent_t legacy_done_ = nullptr;  // recorded on the legacy stream
  std::unique_ptr<CudaTransformerModel> model_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_CUDA_MODEL_RUNNER_H_
