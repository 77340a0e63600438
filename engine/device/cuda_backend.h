// CudaBackend: DeviceBackend over the CUDA driver virtual-memory API
// (cuMemAddressReserve / cuMemCreate / cuMemMap / cuMemSetAccess /
// cuMemUnmap / cuMemRelease / cuMemAddressFree), on the device's primary
// context.
//
// libcuda.so.1 is loaded with dlopen at Create() time and nothing links the
// driver or cudart, so the same binary runs on machines without a GPU:
// Create() then returns UNAVAILABLE naming the reason (library missing, no
// device, cuInit failure). Every CUresult becomes a Status naming the call,
// the error name and the numbers involved.
//
// Host buffers are pinned (cuMemHostAlloc) so backup copies run at PCIe speed.
// CopyToDevice/CopyToHost are synchronous driver copies on the legacy default
// stream: work on a non-blocking stream that reads what CopyToDevice wrote
// must wait for the legacy stream (an event) or a Synchronize() first
// (CudaModelRunner does; TaggedPool's restore synchronizes).
// Thread-safe: each call makes the primary context current on the calling
// thread first. The destructor synchronizes and unsets the context on its
// thread before releasing it; every other user must be done by then.
#ifndef COLO_ENGINE_DEVICE_CUDA_BACKEND_H_
#define COLO_ENGINE_DEVICE_CUDA_BACKEND_H_

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/device/device_backend.h"

namespace colo {
namespace engine {

class CudaBackend : public DeviceBackend {
 public:
  struct Options {
    // CUDA device ordinal.
    int device = 0;
  };

  // UNAVAILABLE when the driver or the device is missing; INVALID_ARGUMENT
  // for a device ordinal out of range.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(
      const Options& options);
  ~CudaBackend() override;

  absl::string_view kind() const override { return "cuda"; }
  int device() const override;
  size_t granularity() const override;

  absl::StatusOr<void*> ReserveAddressRange(size_t bytes) override;
  absl::Status FreeAddressRange(void* base, size_t bytes) override;
  absl::StatusOr<PhysicalHandle> CreatePhysical(size_t bytes) override;
  absl::Status ReleasePhysical(PhysicalHandle handle) override;
  absl::Status MapPhysical(void* address, size_t bytes,
                           PhysicalHandle handle) override;
  absl::Status UnmapRange(void* address, size_t bytes) override;

  absl::StatusOr<DeviceMemoryInfo> MemoryInfo() override;
  absl::Status Synchronize() override;
  absl::Status CopyToHost(void* host_dst, const void* device_src,
                          size_t bytes) override;
  absl::Status CopyToDevice(void* device_dst, const void* host_src,
                            size_t bytes) override;
  absl::StatusOr<void*> AllocateHost(size_t bytes) override;
  absl::Status FreeHost(void* host, size_t bytes) override;

  // Implementation detail (the dlopen'ed driver table); public only so the
  // .cc can define it.
  struct Driver;

 private:
  CudaBackend(std::unique_ptr<Driver> driver, int device);

  // Constant after construction.
  std::unique_ptr<Driver> driver_;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_DEVICE_CUDA_BACKEND_H_
