// Loading one rank's shard of a tensor-parallel model: the local ModelWeights
// (ShardPlan::local_config()) in the `weights` tag, filled with the rank's
// slices of the checkpoint's tensors (converted to float32 slice by slice:
// a rank never copies a full tensor), and the TransformerModel over them with
// its TensorParallelShard set.
#ifndef COLO_ENGINE_TP_SHARD_LOADER_H_
#define COLO_ENGINE_TP_SHARD_LOADER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/model_weights.h"
#include "engine/model/safetensors.h"
#include "engine/model/tp_collectives.h"
#include "engine/tp/shard_plan.h"
#include "kernels/cpu/thread_pool.h"

namespace colo {
namespace engine {

// Fills `local` (allocated for plan.local_config()) from the checkpoint.
// NOT_FOUND naming a missing tensor; INVALID_ARGUMENT for a tensor whose
// shape differs from the full config's or whose dtype is not F32/F16/BF16.
absl::Status ReadShard(const SafetensorsCheckpoint& checkpoint, const ShardPlan& plan,
                       ModelWeights* local);

struct ShardedModelOptions {
  std::string model_dir;
  int rank = 0;
  int size = 1;
  TaggedPool* weights_pool = nullptr;      // required
  CachingAllocator* allocator = nullptr;   // required
  kernels::ThreadPool* threads = nullptr;  // null = the default pool
  TpCollectives* collectives = nullptr;    // required when size > 1
};

struct ShardedModel {
  std::unique_ptr<TransformerModel> model;  // config() = the local config
  ModelConfig full_config;
};

// config.json + the plan + ReadShard + TransformerModel::Create +
// set_tensor_parallel. Errors name the model directory.
absl::StatusOr<ShardedModel> LoadShardedModel(const ShardedModelOptions& options);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_TP_SHARD_LOADER_H_
