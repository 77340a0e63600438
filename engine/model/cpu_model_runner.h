// CpuModelRunner: the ModelRunner over the CPU TransformerModel. Forward
// reads the weights in place (ModelWeights in the CPU pool's `weights` tag),
// so a committed update is live at once and WeightsCommitted() does nothing.
//
// The model is not owned and must outlive the runner. Thread-compatible
// (see ModelRunner).
#ifndef COLO_ENGINE_MODEL_CPU_MODEL_RUNNER_H_
#define COLO_ENGINE_MODEL_CPU_MODEL_RUNNER_H_

#include "engine/model/forward.h"
#include "engine/model/model_runner.h"

namespace colo {
namespace engine {

class CpuModelRunner : public ModelRunner {
 public:
  explicit CpuModelRunner(TransformerModel* model) : model_(model) {}

  const ModelConfig& config() const override { return model_->config(); }
  absl::string_view device_kind() const override { return "cpu"; }
  absl::StatusOr<ForwardResult> Forward(absl::Span<const ForwardRequest> batch,
                                        const KvCacheView& kv,
                                        const ForwardOptions& options) override {
    return model_->Forward(batch, kv, options);
  }
  absl::Status WeightsCommitted() override { return absl::OkStatus(); }
  void WeightsDiscarded() override { model_->weights().MarkAllStale(); }
  int64_t NumStaleWeights() const override { return model_->weights().num_stale(); }
  absl::Status WithHostWeights(
      const std::function<absl::Status(const ModelWeights&)>& fn) override {
    return fn(model_->weights());
  }

 private:
  TransformerModel* const model_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MODEL_CPU_MODEL_RUNNER_H_
