// ShardedUpdateSink: the UpdateSink of one rank of a tensor-parallel engine.
// Updates name and shape the FULL tensors (every rank receives them, as with
// SGLang's update_weights_from_distributed); the sink validates against the
// full shapes (ShardPlan), keeps only the bytes of the rank's shard and
// stages them into a ModelWeightUpdateSink over the rank's local weights, so
// staging holds the shard only and the commit is the local sink's
// (all-or-nothing, page exchange). Replicated tensors (norms) keep the local
// sink's zero-copy staging area; sharded ones are staged piece by piece
// (StagingArea returns null for them). The zero padding rows of the last
// rank's vocab shard are staged by Begin.
//
// Not thread-safe (see UpdateSink). The plan, weights and allocator must
// outlive the sink.
#ifndef COLO_ENGINE_TP_SHARDED_UPDATE_SINK_H_
#define COLO_ENGINE_TP_SHARDED_UPDATE_SINK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/memory/caching_allocator.h"
#include "engine/model/model_weights.h"
#include "engine/model/weight_update_sink.h"
#include "engine/tp/shard_plan.h"
#include "weight_sync/update_sink.h"

namespace colo {
namespace engine {

class ShardedUpdateSink : public weight_sync::UpdateSink {
 public:
  // `weights` holds plan.local_config()'s tensors. INVALID_ARGUMENT for a
  // missing pointer.
  static absl::StatusOr<std::unique_ptr<ShardedUpdateSink>> Create(const ShardPlan* plan,
                                                                   ModelWeights* weights,
                                                                   CachingAllocator* allocator);

  std::vector<weight_sync::TensorSpec> ExpectedTensors() const override;
  absl::Status Validate(const std::vector<weight_sync::TensorSpec>& specs) const override;
  absl::Status Begin(const std::vector<weight_sync::TensorSpec>& specs) override;
  absl::Status Stage(const std::string& name, size_t offset, const void* data,
                     size_t bytes) override;
  void* StagingArea(const std::string& name, size_t offset, size_t bytes) override;
  absl::Status MarkStaged(const std::string& name, size_t offset, size_t bytes) override;
  absl::Status CheckComplete() const override { return local_->CheckComplete(); }
  absl::Status Commit() override { return local_->Commit(); }
  void Abort() override { local_->Abort(); }

 private:
  struct Begun {
    TensorShard shard;
    size_t element_bytes = 0;
  };
  ShardedUpdateSink(const ShardPlan* plan, std::unique_ptr<ModelWeightUpdateSink> local)
      : plan_(plan), local_(std::move(local)) {}
  // The local specs of `specs`, or INVALID_ARGUMENT listing every offender.
  absl::StatusOr<std::vector<weight_sync::TensorSpec>> ToLocal(
      const std::vector<weight_sync::TensorSpec>& specs) const;

  const ShardPlan* const plan_;
  std::unique_ptr<ModelWeightUpdateSink> local_;
  absl::flat_hash_map<std::string, Begun> begun_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_SHARDED_UPDATE_SINK_H_
