// MemoryInfo: one snapshot of the engine's memory as GetMemoryInfo reports
// it: the tagged pool's per-tag numbers, the caching allocator's statistics
// and the device's free/total as the driver (CUDA) or the kernel (CPU, plus
// process RSS) sees it. Plain data, no proto dependency (the server maps it).
#ifndef COLO_ENGINE_MEMORY_MEMORY_INFO_H_
#define COLO_ENGINE_MEMORY_MEMORY_INFO_H_

#include <string>

#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"
#include "engine/memory/caching_allocator.h"
#include "engine/memory/tagged_pool.h"

namespace colo {
namespace engine {

struct MemoryInfo {
  std::string backend_kind;  // "cpu" or "cuda"
  int device = 0;
  PoolInfo pool;
  CachingAllocatorStats allocator;  // zeros when there is no allocator
  DeviceMemoryInfo device_memory;
};

// Takes a snapshot. `pool` is required; `allocator` may be null. Fails only
// when the backend cannot report device memory.
absl::StatusOr<MemoryInfo> CollectMemoryInfo(const TaggedPool& pool,
                                             const CachingAllocator* allocator);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_MEMORY_MEMORY_INFO_H_
