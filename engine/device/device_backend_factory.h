// CreateDeviceBackend: picks a DeviceBackend by name.
//   "cpu"  -> CpuBackend (default options)
//   "cuda" -> CudaBackend on `device`; UNAVAILABLE without a GPU/driver
//   "auto" -> CudaBackend when it can be created, else CpuBackend
// Anything else: INVALID_ARGUMENT naming the valid kinds.
#ifndef COLO_ENGINE_DEVICE_DEVICE_BACKEND_FACTORY_H_
#define COLO_ENGINE_DEVICE_DEVICE_BACKEND_FACTORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/device/device_backend.h"

namespace colo {
namespace engine {

absl::StatusOr<std::unique_ptr<DeviceBackend>> CreateDeviceBackend(
    absl::string_view kind, int device = 0);

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_DEVICE_DEVICE_BACKEND_FACTORY_H_
