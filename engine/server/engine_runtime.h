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
// Device: the forward pass runs on the CPU backend. `--device=cuda` is
// refused (FAILED_PRECONDITION) until a CUDA forward pass exists; `auto`
// picks the CPU and says so when a GPU is present.
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
  TaggedPool& pool() { return *pool_; }
  CachingAllocator& allocator() { return *allocator_; }
  DeviceBackend& backend() { return *backend_; }
  // Weight bytes may be read by any thread but written only inside
  // Scheduler::CommitWeights.
  ModelWeights& weights() { return model_->weights(); }
  int32_t max_context_tokens() const { return max_context_tokens_; }
  int32_t eos_token_id() const { return eos_token_id_; }

  // Tagged pool, caching allocator and device numbers, now.
  absl::StatusOr<MemoryInfo> CollectMemory() const;

 private:
  explicit EngineRuntime(const EngineOptions& options) : options_(options) {}
  absl::Status Init();

  const EngineOptions options_;
  std::unique_ptr<DeviceBackend> backend_;
  std::unique_ptr<TaggedPool> pool_;
  std::unique_ptr<CachingAllocator> allocator_;
  std::unique_ptr<kernels::ThreadPool> threads_;
  std::unique_ptr<TransformerModel> model_;
  std::unique_ptr<kvcache::KvCacheManager> kv_;
  std::unique_ptr<Scheduler> scheduler_;
  int32_t max_context_tokens_ = 0;
  int32_t eos_token_id_ = -1;
};

// Reads eos_token_id from config.json (an int, or the first of a list);
// -1 when absent.
int32_t ReadEosTokenId(const std::string& model_dir);

}  // namespace colo::engine

#endif  // COLO_ENGINE_SERVER_ENGINE_RUNTIME_H_
