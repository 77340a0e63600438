#include "engine/device/fault_injecting_backend.h"

#include "absl/strings/str_cat.h"

namespace colo {
namespace engine {

FaultInjectingBackend::FaultInjectingBackend(DeviceBackend* base)
    : base_(base) {}

void FaultInjectingBackend::FailPhysicalAllocationAfter(int64_t successes) {
  absl::MutexLock lock(&mu_);
  physical_successes_left_ = successes;
}

void FaultInjectingBackend::FailMapAfter(int64_t successes) {
  absl::MutexLock lock(&mu_);
  map_successes_left_ = successes;
}

void FaultInjectingBackend::FailUnmapAfter(int64_t successes) {
  absl::MutexLock lock(&mu_);
  unmap_successes_left_ = successes;
}

void FaultInjectingBackend::FailSynchronize() {
  absl::MutexLock lock(&mu_);
  fail_synchronize_ = true;
}

void FaultInjectingBackend::ClearFaults() {
  absl::MutexLock lock(&mu_);
  physical_successes_left_ = -1;
  map_successes_left_ = -1;
  unmap_successes_left_ = -1;
  fail_synchronize_ = false;
}

int64_t FaultInjectingBackend::synchronizes() const {
  absl::MutexLock lock(&mu_);
  return synchronizes_;
}

int64_t FaultInjectingBackend::unsynchronized_unmaps() const {
  absl::MutexLock lock(&mu_);
  return unsynchronized_unmaps_;
}

int64_t FaultInjectingBackend::physical_allocations() const {
  absl::MutexLock lock(&mu_);
  return physical_allocations_;
}

int64_t FaultInjectingBackend::injected_failures() const {
  absl::MutexLock lock(&mu_);
  return injected_failures_;
}

absl::StatusOr<void*> FaultInjectingBackend::ReserveAddressRange(
    size_t bytes) {
  return base_->ReserveAddressRange(bytes);
}

absl::Status FaultInjectingBackend::FreeAddressRange(void* base,
                                                     size_t bytes) {
  return base_->FreeAddressRange(base, bytes);
}

absl::StatusOr<PhysicalHandle> FaultInjectingBackend::CreatePhysical(
    size_t bytes) {
  {
    absl::MutexLock lock(&mu_);
    if (physical_successes_left_ == 0) {
      ++injected_failures_;
      return absl::ResourceExhaustedError(absl::StrCat(
          "injected fault: CreatePhysical(", bytes,
          " bytes) out of device memory after ", physical_allocations_,
          " allocations"));
    }
  }
  absl::StatusOr<PhysicalHandle> h = base_->CreatePhysical(bytes);
  if (h.ok()) {
    absl::MutexLock lock(&mu_);
    ++physical_allocations_;
    if (physical_successes_left_ > 0) --physical_successes_left_;
  }
  return h;
}

absl::Status FaultInjectingBackend::ReleasePhysical(PhysicalHandle handle) {
  return base_->ReleasePhysical(handle);
}

absl::Status FaultInjectingBackend::MapPhysical(void* address, size_t bytes,
                                                PhysicalHandle handle) {
  {
    absl::MutexLock lock(&mu_);
    if (map_successes_left_ == 0) {
      ++injected_failures_;
      return absl::InternalError(absl::StrCat(
          "injected fault: MapPhysical(", bytes, " bytes) failed"));
    }
  }
  absl::Status s = base_->MapPhysical(address, bytes, handle);
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    if (map_successes_left_ > 0) --map_successes_left_;
    synced_since_map_ = false;
  }
  return s;
}

absl::Status FaultInjectingBackend::UnmapRange(void* address, size_t bytes) {
  {
    absl::MutexLock lock(&mu_);
    if (unmap_successes_left_ == 0) {
      ++injected_failures_;
      return absl::InternalError(absl::StrCat(
          "injected fault: UnmapRange(", bytes, " bytes) failed"));
    }
  }
  absl::Status s = base_->UnmapRange(address, bytes);
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    if (unmap_successes_left_ > 0) --unmap_successes_left_;
    if (!synced_since_map_) ++unsynchronized_unmaps_;
  }
  return s;
}

absl::StatusOr<DeviceMemoryInfo> FaultInjectingBackend::MemoryInfo() {
  return base_->MemoryInfo();
}

absl::Status FaultInjectingBackend::Synchronize() {
  {
    absl::MutexLock lock(&mu_);
    if (fail_synchronize_) {
      ++injected_failures_;
      return absl::InternalError("injected fault: Synchronize failed (dead context)");
    }
  }
  absl::Status s = base_->Synchronize();
  if (s.ok()) {
    absl::MutexLock lock(&mu_);
    ++synchronizes_;
    synced_since_map_ = true;
  }
  return s;
}

absl::Status FaultInjectingBackend::CopyToHost(void* host_dst,
                                               const void* device_src,
                                               size_t bytes) {
  return base_->CopyToHost(host_dst, device_src, bytes);
}

absl::Status FaultInjectingBackend::CopyToDevice(void* device_dst,
                                                 const void* host_src,
                                                 size_t bytes) {
  return base_->CopyToDevice(device_dst, host_src, bytes);
}

absl::StatusOr<void*> FaultInjectingBackend::AllocateHost(size_t bytes) {
  return base_->AllocateHost(bytes);
}

absl::Status FaultInjectingBackend::FreeHost(void* host, size_t bytes) {
  return base_->FreeHost(host, bytes);
}

}  // namespace engine
}  // namespace colo
