#include "engine/device/device_backend_factory.h"

#include "absl/strings/str_cat.h"
#include "engine/device/cpu_backend.h"
#include "engine/device/cuda_backend.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {

absl::StatusOr<std::unique_ptr<DeviceBackend>> CreateDeviceBackend(
    absl::string_view kind, int device) {
  if (kind == "cpu") {
    absl::StatusOr<std::unique_ptr<CpuBackend>> cpu =
        CpuBackend::Create(CpuBackend::Options());
    if (!cpu.ok()) return cpu.status();
    return std::unique_ptr<DeviceBackend>(std::move(*cpu));
  }
  if (kind == "cuda" || kind == "auto") {
    CudaBackend::Options options;
    options.device = device;
    absl::StatusOr<std::unique_ptr<CudaBackend>> cuda =
        CudaBackend::Create(options);
    if (cuda.ok()) return std::unique_ptr<DeviceBackend>(std::move(*cuda));
    if (kind == "cuda") return cuda.status();
    COLO_LOG(INFO) << "device backend 'auto': CUDA unavailable ("
                   << cuda.status().message() << "), using CPU";
    return CreateDeviceBackend("cpu", 0);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown device backend '", kind, "'; valid: cpu, cuda, auto"));
}

}  // namespace engine
}  // namespace colo
