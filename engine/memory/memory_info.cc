#include "engine/memory/memory_info.h"

#include <string>

namespace colo {
namespace engine {

absl::StatusOr<MemoryInfo> CollectMemoryInfo(
    const TaggedPool& pool, const CachingAllocator* allocator) {
  MemoryInfo info;
  DeviceBackend* backend = pool.backend();
  info.backend_kind = std::string(backend->kind());
  info.device = backend->device();
  info.pool = pool.Info();
  if (allocator != nullptr) info.allocator = allocator->Stats();
  absl::StatusOr<DeviceMemoryInfo> device = backend->MemoryInfo();
  if (!device.ok()) return device.status();
  info.device_memory = *device;
  return info;
}

}  // namespace engine
}  // namespace colo
