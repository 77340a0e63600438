// ModelRunner: what the scheduler needs from a model, whatever device runs
// its forward pass. Implemented by CpuModelRunner (over the CPU
// TransformerModel) and, under --config=cuda, by CudaModelRunner (over
// CudaTransformerModel on a stream).
//
// Contract of Forward: as TransformerModel::Forward (engine/model/forward.h).
// `kv` points at the memory of the runner's device (host memory for the CPU
// runner, device memory for the CUDA runner); ForwardRequest::slots and
// new_tokens are always host memory.
//
// Weights: weight updates write into the host ModelWeights
// (Scheduler::CommitWeights). The scheduler calls PrepareWeightsCommit()
// before the update writes (a device runner without a host master maps the
// host copy's memory for it), then WeightsCommitted() before any further
// forward step, so a runner with its own device copy brings it up to date
// there (inside the commit: no step ever sees a mix); when the update fails
// before that, AbortWeightsCommit().
//
// Thread-compatible: confined to the scheduler thread once the scheduler
// started (one call at a time).
#ifndef COLO_ENGINE_MODEL_MODEL_RUNNER_H_
#define COLO_ENGINE_MODEL_MODEL_RUNNER_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/model/forward.h"
#include "engine/model/model_config.h"
#include "engine/model/rank_peers.h"

#include "engine/model/model_weights.h"

namespace colo {
namespace engine {

class ModelRunner {
 public:
  virtual ~ModelRunner() = default;

  virtual const ModelConfig& config() const = 0;
  // "cpu" or "cuda": where Forward runs (and where `kv` must live).
  virtual absl::string_view device_kind() const = 0;

  virtual absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                                const KvCacheView& kv,
                                                const ForwardOptions& options) = 0;

  // The host master weights changed (a committed update). A runner whose
  // forward reads the host weights has nothing to do; a device runner
  // uploads them. On error the device copy may be partly written: the
  // caller must not run a step before a later call succeeds.
  virtual absl::Status WeightsCommitted() = 0;
  // Called before an update writes the host weights; an error fails the
  // commit with nothing written.
  virtual absl::Status PrepareWeightsCommit() { return absl::OkStatus(); }
  // The update failed after PrepareWeightsCommit and before WeightsCommitted.
  virtual void AbortWeightsCommit() {}

  // The `weights` tag was resumed without a host backup: the memory the
  // forward reads holds no weights. A runner that reads the host master
  // weights in place marks them all stale (ModelWeights::MarkAllStale), so
  // that only updates covering every tensor make the engine serve again; a
  // device runner whose copy is rewritten whole from the (intact) host
  // master in WeightsCommitted() has nothing to record.
  virtual void WeightsDiscarded() = 0;
  // Tensors the forward reads that hold no weights since then (0: complete).
  virtual int64_t NumStaleWeights() const = 0;

  // The other ranks of a tensor-parallel engine (engine/tp), which follow
  // the scheduler's memory transitions; null for a single-rank runner.
  virtual RankPeers* peers() { return nullptr; }

  // Runs fn over host float32 weights equal to what the forward reads (for
  // checksums): the host weights themselves, or a device runner's weights
  // copied back (e.g. the bf16 values it serves).
  virtual absl::Status WithHostWeights(
      const std::function<absl::Status(const ModelWeights&)>& fn) = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_MODEL_RUNNER_H_
