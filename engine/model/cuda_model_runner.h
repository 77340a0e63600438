// CudaModelRunner: the ModelRunner over CudaTransformerModel, running every
// step on its own non-blocking CUDA stream of the pool's device (each entry
// point makes that device current on the calling thread). --config=cuda only.
//
// Weights: `host_weights` (a float32 ModelWeights in host memory, in the
// `weights` tag of `host_pool`) is where weight updates land
// (Scheduler::CommitWeights), and Create() converts it into the device
// dtype in the `weights` tag of `device_pool`. Two modes:
//   keep_host_weights = true   the host copy stays resident as a master:
//       WeightsCommitted() uploads all of it again.
//   keep_host_weights = false  (no host master) Create() releases the host
//       copy's memory after the upload. A commit resumes it for the update
//       only (PrepareWeightsCommit: fresh pages, every tensor marked stale),
//       the update writes the tensors it carries, WeightsCommitted() uploads
//       exactly those (converting on the device) and releases the host copy
//       again; AbortWeightsCommit() releases it on failure. Host memory is
//       then held only while an update commits.
// Either way, after the device `weights` tag was resumed without a backup
// (WeightsDiscarded) every device tensor counts as stale until an update
// (re)writes it, and NumStaleWeights() says how many are left, so the engine
// never serves a mix of new and empty tensors.
//
// Sampling: on the device (CudaTransformerModel: greedy, temperature, top-k,
// top-p, seeds with the CPU's counter-based RNG, logprobs); rows the device
// cannot finish (sampling_plan.h) are sampled on the host from a copy of
// their logits with kernels::SampleToken.
//
// CUDA graphs (use_graphs): a step whose requests all decode one token is
// padded to the smallest decode bucket (DecodeGraphBuckets of
// max_requests) and replayed from a graph captured for that bucket. The
// first step of a bucket runs eagerly and captures the graph for the next
// ones (on the cuda_graph tag's fixed buffers). Graphs are kept across
// Release/Resume (the addresses stay valid) and across weight updates (the
// device weights are rewritten in place); a bucket is captured again only
// when the KV view's pools moved. A capture that fails disables graphs for
// that bucket (the step runs eagerly; logged once).
//
// Ordering: the KV cache writes its tables (full_to_swa) with synchronous
// driver copies on the legacy default stream; each Forward makes the
// runner's stream wait for that stream first, so a step never reads a table
// whose copy is still in flight.
//
// Thread-compatible (see ModelRunner). host_weights, host_pool and
// device_pool must outlive the runner.
#ifndef COLO_ENGINE_MODEL_CUDA_MODEL_RUNNER_H_
#define COLO_ENGINE_MODEL_CUDA_MODEL_RUNNER_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/cuda_forward.h"
#include "engine/model/model_runner.h"
#include "engine/model/model_weights.h"
#include "kernels/cuda/cuda_graph.h"
#include "kernels/cuda/cuda_stream.h"
#include "kernels/cuda/dtype.h"

namespace colo {
namespace engine {

class CudaModelRunner : public ModelRunner {
 public:
  struct Options {
    ModelWeights* host_weights = nullptr;  // required, not owned
    // The pool holding host_weights (its `weights` tag); required when
    // keep_host_weights is false.
    TaggedPool* host_pool = nullptr;
    TaggedPool* device_pool = nullptr;     // required: over the CUDA backend
    kernels::cuda::DType dtype = kernels::cuda::DType::kFloat32;
    kernels::cuda::DType kv_dtype = kernels::cuda::DType::kFloat32;
    bool keep_host_weights = true;
    bool use_graphs = true;
    // Limits of one step (fixed cuda_graph buffers are sized by them).
    int64_t max_tokens = 2048;   // new tokens of all requests
    int64_t max_requests = 64;   // requests
    int64_t max_context = 2048;  // positions per request
    int32_t page_size = 1;       // of the KV cache
  };

  // UNAVAILABLE without a usable GPU; INVALID_ARGUMENT for missing
  // pointers or bad limits; RESOURCE_EXHAUSTED from the pools.
  static absl::StatusOr<std::unique_ptr<CudaModelRunner>> Create(const Options& options);
  ~CudaModelRunner() override;
  CudaModelRunner(const CudaModelRunner&) = delete;
  CudaModelRunner& operator=(const CudaModelRunner&) = delete;

  const ModelConfig& config() const override { return model_->config(); }
  absl::string_view device_kind() const override { return "cuda"; }
  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv,
                                        const ForwardOptions& options) override;
  absl::Status PrepareWeightsCommit() override;
  void AbortWeightsCommit() override;
  absl::Status WeightsCommitted() override;
  void WeightsDiscarded() override;
  int64_t NumStaleWeights() const override { return static_cast<int64_t>(stale_.size()); }
  absl::Status WithHostWeights(
      const std::function<absl::Status(const ModelWeights&)>& fn) override;

  // Graphs captured so far (tests, metrics).
  int num_graphs() const;
  // Steps replayed from a graph / run eagerly so far.
  int64_t graph_steps() const { return graph_steps_; }
  int64_t eager_steps() const { return eager_steps_; }

 private:
  struct Graph {
    kernels::cuda::CudaGraph graph;
    std::vector<const void*> kv_pointers;  // the view it was captured on
    bool disabled = false;
  };

  explicit CudaModelRunner(const Options& options) : options_(options) {}
  absl::Status SetDevice() const;
  absl::Status ReleaseHostWeights();
  static std::vector<const void*> KvPointers(const KvCacheView& kv);

  const Options options_;
  int device_ = 0;
  kernels::cuda::CudaStream stream_;
  cudaEvent_t legacy_done_ = nullptr;  // recorded on the legacy stream
  std::unique_ptr<CudaTransformerModel> model_;
  std::vector<int32_t> buckets_;
  std::map<int32_t, Graph> graphs_;  // by bucket
  // Device tensors that hold no weights (after a resume without backup).
  absl::flat_hash_set<std::string> stale_;
  bool host_resident_ = true;  // the host copy's memory is mapped
  int64_t graph_steps_ = 0;
  int64_t eager_steps_ = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_CUDA_MODEL_RUNNER_H_
