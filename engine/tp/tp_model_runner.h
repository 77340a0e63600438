// TpModelRunner: rank 0's ModelRunner of a tensor-parallel engine. Each
// forward step it sends the batch (tokens, positions, KV pages: TpStep) to
// the other ranks, runs its own shard (the CPU TransformerModel with the TP
// hooks; the collectives pair with the other ranks'), and waits for every
// rank's answer; rank 0 samples from the full logits.
//
// It is also the scheduler's RankPeers: the other ranks release / resume
// their tags, empty their caching allocator and answer on pause, each
// reporting its own bytes.
//
// Failure: once the TpLeader reports the engine FAILED (a rank died or
// hung), Forward and the memory transitions fail UNAVAILABLE naming the
// rank, at once. A collective that fails on rank 0 is diagnosed
// (TpLeader::Diagnose) so the error names the rank.
//
// Thread-compatible: the scheduler thread calls it (see ModelRunner).
#ifndef COLO_ENGINE_TP_TP_MODEL_RUNNER_H_
#define COLO_ENGINE_TP_TP_MODEL_RUNNER_H_

#include <atomic>
#include <cstdint>

#include "engine/model/forward.h"
#include "engine/model/model_runner.h"
#include "engine/model/rank_peers.h"
#include "engine/tp/tp_leader.h"

namespace colo {
namespace engine {

// Where a TP engine's steps spend their time (rank 0's view).
struct TpStepStats {
  int64_t steps = 0;
  int64_t step_micros = 0;        // whole Forward calls
  int64_t collective_micros = 0;  // inside all-reduce / all-gather
  int64_t collective_bytes = 0;
  int64_t wait_micros = 0;        // waiting for the other ranks after rank 0's forward
};

class TpModelRunner : public ModelRunner, public RankPeers {
 public:
  // `model` is rank 0's shard; neither is owned. `page_size`: the KV
  // cache's (the steps carry pages).
  TpModelRunner(TransformerModel* model, TpLeader* leader, int32_t page_size)
      : model_(model), leader_(leader), page_size_(page_size) {}

  const ModelConfig& config() const override { return model_->config(); }
  absl::string_view device_kind() const override { return "cpu"; }
  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv,
                                        const ForwardOptions& options) override;
  absl::Status WeightsCommitted() override { return absl::OkStatus(); }
  void WeightsDiscarded() override { model_->weights().MarkAllStale(); }
  int64_t NumStaleWeights() const override { return model_->weights().num_stale(); }
  RankPeers* peers() override { return this; }
  // Rank 0's shard (checksums of a TP engine combine every rank's pieces:
  // engine/tp/tp_checksums.h).
  absl::Status WithHostWeights(
      const std::function<absl::Status(const ModelWeights&)>& fn) override {
    return fn(model_->weights());
  }

  absl::StatusOr<std::vector<RankTransition>> Release(const std::vector<MemoryTag>& tags) override;
  absl::StatusOr<std::vector<RankTransition>> Resume(const std::vector<MemoryTag>& tags) override;
  absl::StatusOr<std::vector<RankCacheReport>> Continue(bool empty_cache) override;
  absl::StatusOr<std::vector<RankCacheReport>> Pause() override;

  // Thread-safe.
  TpStepStats stats() const;

 private:
  absl::StatusOr<std::vector<RankTransition>> Transition(const std::vector<MemoryTag>& tags,
                                                         bool release);
  absl::StatusOr<std::vector<RankCacheReport>> CacheReports(bool empty_cache);

  TransformerModel* const model_;
  TpLeader* const leader_;
  const int32_t page_size_;
  std::atomic<int64_t> steps_{0}, step_micros_{0}, wait_micros_{0};
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_TP_MODEL_RUNNER_H_
