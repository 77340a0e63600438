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
//         "built without CUDA") the CUDA backend: the tagged pool, the KV
//         cache and the caching allocator are device memory, the forward
//         runs on the GPU (CudaModelRunner). The host ModelWeights (in a
//         separate host pool that is never released) stays the master copy:
//         weight updates stage in host memory (staging_allocator()), write
//         it in Scheduler::CommitWeights and the runner re-uploads it to the
//         device's `weights` tag inside the same commit. UNAVAILABLE when no
//         GPU is usable.
//   auto  cuda when this build has CUDA and a GPU is usable, else cpu (and
//         says why in the log).
#ifndef COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_
#define COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/memory_info.h"
#include "engine/memory/tagged_pool.h"
#include "engine/model/forward.h"
#include "engine/model/model_runner.h"
#include "engine/scheduler/scheduler.h"
#include "engine/server/engine_options.h"
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
  const ModelConfig& config() const { return model_->config(); }
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
  int32_t eos_token_id() const { return eos_token_id_; }
  // Random, chosen when the runtime is created: a controller that sees it
  // change knows the engine restarted (GetServerInfo.instance_id).
  const std::string& instance_id() const { return instance_id_; }

  // Tagged pool, caching allocator and device numbers, now.
  absl::StatusOr<MemoryInfo> CollectMemory() const;

 private:
  explicit EngineRuntime(const EngineOptions& options);
  absl::Status Init();
  // Sets backend_ from --device (see the file comment).
  absl::Status InitBackend();
  // Loads the host model; on CUDA also the host pool/allocator and the
  // device runner. `device_free` receives the device's free bytes before
  // the model took any of it (for --mem_fraction).
  absl::Status InitModel(uint64_t* device_free);

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
  std::unique_ptr<TransformerModel> model_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<kvcache::KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  int32_t max_context_tokens_ = 0;
  int32_t eos_token_id_ = -1;
  const std::string instance_id_;
};

// Reads eos_token_id from config.json (an int, or the first of a list);
// -1 when absent.
int32_t ReadEosTokenId(const std::string& model_dir);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_
