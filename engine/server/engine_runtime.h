// EngineRuntime: the composition root of colo-engine. Builds, in dependency
// order, the device backend, the tagged pool (weights / kv_cache /
// cuda_graph), the caching allocator for transient buffers, the model (its
// weights in the `weights` tag), the KV cache (every pool in the `kv_cache`
// tag) and the scheduler thread, from EngineOptions; and tears them down in
// reverse order.
//
// KV sizing: --kv_cache_bytes, else --mem_fraction of the device's memory
// (CPU: MemAvailable) minus the weights, else a 256 MiB default. With
// sliding-window layers the bytes are split so that the SWA pool holds
// swa_full_tokens_ratio times the full pool's tokens.
//
// Device (--device):
//   cpu   the CPU backend; the model's weights live in the pool's `weights`
//         tag and the CPU forward reads them in place.
//   cuda  (builds with --config=cuda only; otherwise FAILED_PRECONDITION
//         "built without CUDA") the CUDA backend on --device_ordinal (the
//         init thread and the runner's threads make that device current):
//         the tagged pool, the KV cache (--kv_cache_dtype) and the caching
//         allocator are device memory, the forward runs on the GPU in
//         --dtype (CudaModelRunner). The model is loaded into a host
//         ModelWeights (float32, in a separate host pool) and converted onto
//         the device; without --weights_host_backup the host copy's memory is
//         then released, and a weight update maps it only while it commits
//         (updates stage in host memory, staging_allocator(), write the host
//         copy in Scheduler::CommitWeights and the runner uploads what they
//         wrote inside the same commit). With --weights_host_backup it stays
//         as a master. UNAVAILABLE when no GPU is usable.
//   auto  cuda when this build has CUDA and a GPU is usable, else cpu (and
//         says why in the log); always cpu with --tp_size > 1.
//
// Tensor parallelism (--tp_size > 1, engine/tp): a TpLeader starts (or
// waits for) the other ranks, rank 0 loads its shard (ShardPlan) and runs
// the forward through a TpModelRunner; the KV cache holds rank 0's KV heads
// and the other ranks allocate theirs with the same page layout; config()
// is the full model's.
#ifndef COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_
#define COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/memory_info.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/model_runner.h"
#include "engine/scheduler/scheduler.h"
#include "engine/server/dtype_options.h"
#include "engine/server/engine_options.h"
#include "engine/tp/shard_plan.h"
#include "engine/tp/tp_leader.h"
#include "engine/tp/tp_model_runner.h"
#include "kernels/cpu/thread_pool.h"
#include "kvcache/kv_cache_manager.h"

namespace colo::engine {

class EngineRuntime {
 public:
  // Loads the model and starts the scheduler thread.
  static absl::StatusOr<std::unique_ptr<EngineRuntime>> Create(const EngineOptions& options);
  ~EngineRuntime();
  EngineRuntime(const EngineRuntime&) = delete;
  EngineRuntime& operator=(const EngineRuntime&) = delete;

  const EngineOptions& options() const { return options_; }
  // The model's config (with --tp_size > 1: the full model's, not rank 0's
  // shard).
  const ModelConfig& config() const { return tp_ != nullptr ? full_config_ : model_->config(); }
  Scheduler& scheduler() { return *scheduler_; }
  // The device's tagged pool (weights / kv_cache / cuda_graph), caching
  // allocator and backend: what ReleaseTags/ResumeTags and GetMemoryInfo see.
  TaggedPool& pool() { return *pool_; }
  CachingAllocator& allocator() { return *allocator_; }
  DeviceBackend& backend() { return *backend_; }
  // Host-addressable allocator for weight-update shadows and staging: the
  // device allocator on the CPU, a host allocator with --device=cuda.
  CachingAllocator& staging_allocator() {
    return host_allocator_ != nullptr ? *host_allocator_ : *allocator_;
  }
  ModelRunner& runner() { return *runner_; }
  // The host master weights. May be read by any thread but written only
  // inside Scheduler::CommitWeights (which then updates the device copy).
  ModelWeights& weights() { return model_->weights(); }
  int32_t max_context_tokens() const { return max_context_tokens_; }
  // The compute and KV cache dtypes in use (--dtype, --kv_cache_dtype).
  const EngineDTypes& dtypes() const { return dtypes_; }
  int32_t eos_token_id() const { return eos_token_id_; }
  // Random, chosen when the runtime is created: a controller that sees it
  // change knows the engine restarted (GetServerInfo.instance_id).
  const std::string& instance_id() const { return instance_id_; }

  // Tagged pool, caching allocator and device numbers, now (rank 0's with
  // --tp_size > 1).
  absl::StatusOr<MemoryInfo> CollectMemory() const;

  // Tensor parallelism (--tp_size > 1; null / empty otherwise): the other
  // ranks, rank 0's runner and its shard plan (weight updates keep rank
  // 0's shard of full tensors).
  TpLeader* tp() { return tp_.get(); }
  TpModelRunner* tp_runner() { return tp_runner_; }
  const ShardPlan* shard_plan() const { return shard_plan_.get(); }
  // Every rank's memory (rank 0 first); just rank 0's without TP.
  absl::StatusOr<std::vector<MemoryInfo>> CollectRankMemory() const;
  // Non-empty once the engine failed for good (a tensor-parallel rank died
  // or hung): why, naming the rank.
  std::string failure() const { return tp_ != nullptr ? tp_->failure() : std::string(); }

 private:
  explicit EngineRuntime(const EngineOptions& options);
  absl::Status Init();
  // Sets backend_ from --device (see the file comment).
  absl::Status InitBackend();
  // Loads the host model; on CUDA also the host pool/allocator and the
  // device runner. `device_free` receives the device's free bytes before
  // the model took any of it (for --mem_fraction).
  absl::Status InitModel(uint64_t* device_free);
  // --tp_size > 1: starts the other ranks and loads rank 0's shard.
  absl::Status InitTensorParallelModel();

  // Destroyed in reverse order: scheduler, KV, runner, model, host and
  // device memory, backends.
  const EngineOptions options_;
  std::unique_ptr<DeviceBackend> backend_;
  std::unique_ptr<TaggedPool> pool_;
  std::unique_ptr<CachingAllocator> allocator_;
  // --device=cuda only: host memory for the master weights and staging.
  std::unique_ptr<DeviceBackend> host_backend_;
  std::unique_ptr<TaggedPool> host_pool_;
  std::unique_ptr<CachingAllocator> host_allocator_;
  std::unique_ptr<kernels::ThreadPool> threads_;
  // Tensor parallelism: outlives the model (whose collectives it owns).
  std::unique_ptr<TpLeader> tp_;
  std::unique_ptr<ShardPlan> shard_plan_;
  ModelConfig full_config_;
  TpModelRunner* tp_runner_ = nullptr;  // == runner_ with TP
  std::unique_ptr<TransformerModel> model_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<kvcache::KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  int32_t max_context_tokens_ = 0;
  int32_t eos_token_id_ = -1;
  EngineDTypes dtypes_;
  // CUDA: device bytes the model took when it was built.
  uint64_t model_device_bytes_ = 0;
  const std::string instance_id_;
};

// Reads eos_token_id from config.json (an int, or the first of a list);
// -1 when absent.
int32_t ReadEosTokenId(const std::string& model_dir);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_
