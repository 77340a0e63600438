// FaultInjectingBackend: a DeviceBackend that forwards to a real backend and
// fails chosen operations on purpose (leveldb's fault-injection Env idea,
// not a mock: everything that is not failed really happens).
//
//   FaultInjectingBackend faulty(&cpu);
//   faulty.FailPhysicalAllocationAfter(3);  // 4th CreatePhysical from now
//                                           // -> RESOURCE_EXHAUSTED
//
// Thread-safe. Does not own the wrapped backend, which must outlive it.
#ifndef COLO_ENGINE_DEVICE_FAULT_INJECTING_BACKEND_H_
#define COLO_ENGINE_DEVICE_FAULT_INJECTING_BACKEND_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/device/device_backend.h"

namespace colo {
namespace engine {

class FaultInjectingBackend : public DeviceBackend {
 public:
  explicit FaultInjectingBackend(DeviceBackend* base);

  // After `successes` more successful CreatePhysical calls, every following
  // call fails with RESOURCE_EXHAUSTED until ClearFaults(). A negative value
  // disables the fault.
  void FailPhysicalAllocationAfter(int64_t successes) ABSL_LOCKS_EXCLUDED(mu_);
  // Same for MapPhysical (fails with INTERNAL, nothing mapped).
  void FailMapAfter(int64_t successes) ABSL_LOCKS_EXCLUDED(mu_);
  // Same for UnmapRange (fails with INTERNAL and leaves the range mapped).
  void FailUnmapAfter(int64_t successes) ABSL_LOCKS_EXCLUDED(mu_);
  // Every Synchronize fails with INTERNAL (a dead context) until ClearFaults().
  void FailSynchronize() ABSL_LOCKS_EXCLUDED(mu_);
  void ClearFaults() ABSL_LOCKS_EXCLUDED(mu_);

  // Counters since construction.
  int64_t physical_allocations() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t injected_failures() const ABSL_LOCKS_EXCLUDED(mu_);
  // Successful Synchronize calls.
  int64_t synchronizes() const ABSL_LOCKS_EXCLUDED(mu_);
  // UnmapRange calls made with no successful Synchronize since the last
  // MapPhysical: on a GPU those could unmap memory that device work queued
  // after the mapping still uses.
  int64_t unsynchronized_unmaps() const ABSL_LOCKS_EXCLUDED(mu_);

  absl::string_view kind() const override { return base_->kind(); }
  int device() const override { return base_->device(); }
  size_t granularity() const override { return base_->granularity(); }

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
  size_t exchange_page_bytes() const override {
    return base_->exchange_page_bytes();
  }
  absl::Status ExchangePages(void* a, void* b, size_t bytes) override {
    return base_->ExchangePages(a, b, bytes);
  }

 private:
  DeviceBackend* const base_;

  mutable absl::Mutex mu_;
  int64_t physical_successes_left_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t map_successes_left_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t unmap_successes_left_ ABSL_GUARDED_BY(mu_) = -1;
  bool fail_synchronize_ ABSL_GUARDED_BY(mu_) = false;
  int64_t physical_allocations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t injected_failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t synchronizes_ ABSL_GUARDED_BY(mu_) = 0;
  bool synced_since_map_ ABSL_GUARDED_BY(mu_) = true;
  int64_t unsynchronized_unmaps_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace engine
}  // namespace colo

#endif  // COLO_ENGINE_DEVICE_FAULT_INJECTING_BACKEND_H_
