#include "engine/device/device_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/logging/logging.h"

namespace colo {
namespace engine {
namespace {

absl::Status CheckGranular(const DeviceBackend& backend, size_t bytes,
                           absl::string_view what) {
  if (bytes == 0 || bytes % backend.granularity() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": size ", bytes, " is not a positive multiple of the ",
        backend.kind(), " granularity ", backend.granularity()));
  }
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------- Reservation
Reservation::Reservation(DeviceBackend* backend, void* base, size_t bytes)
    : backend_(backend),
      base_(base),
      bytes_(bytes),
      device_(backend->device()) {}

Reservation::~Reservation() {
  absl::Status s = Reset();
  if (!s.ok()) COLO_LOG(ERROR) << "freeing VA reservation: " << s;
}

Reservation::Reservation(Reservation&& other) noexcept
    : backend_(std::exchange(other.backend_, nullptr)),
      base_(std::exchange(other.base_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

Reservation& Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    absl::Status s = Reset();
    if (!s.ok()) COLO_LOG(ERROR) << "freeing VA reservation: " << s;
    backend_ = std::exchange(other.backend_, nullptr);
    base_ = std::exchange(other.base_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

absl::Status Reservation::Reset() {
  if (base_ == nullptr) return absl::OkStatus();
  void* base = std::exchange(base_, nullptr);
  return backend_->FreeAddressRange(base, std::exchange(bytes_, 0));
}

// --------------------------------------------------------- PhysicalAllocation
PhysicalAllocation::PhysicalAllocation(DeviceBackend* backend,
                                       PhysicalHandle handle, size_t bytes)
    : backend_(backend),
      handle_(handle),
      bytes_(bytes),
      device_(backend->device()) {}

PhysicalAllocation::~PhysicalAllocation() {
  absl::Status s = Reset();
  if (!s.ok()) COLO_LOG(ERROR) << "releasing physical memory: " << s;
}

PhysicalAllocation::PhysicalAllocation(PhysicalAllocation&& other) noexcept
    : backend_(std::exchange(other.backend_, nullptr)),
      handle_(std::exchange(other.handle_, 0)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

PhysicalAllocation& PhysicalAllocation::operator=(
    PhysicalAllocation&& other) noexcept {
  if (this != &other) {
    absl::Status s = Reset();
    if (!s.ok()) COLO_LOG(ERROR) << "releasing physical memory: " << s;
    backend_ = std::exchange(other.backend_, nullptr);
    handle_ = std::exchange(other.handle_, 0);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

absl::Status PhysicalAllocation::Reset() {
  if (handle_ == 0) return absl::OkStatus();
  bytes_ = 0;
  return backend_->ReleasePhysical(std::exchange(handle_, 0));
}

// -------------------------------------------------------------------- Mapping
Mapping::Mapping(DeviceBackend* backend, void* address, size_t bytes)
    : backend_(backend),
      address_(address),
      bytes_(bytes),
      device_(backend->device()) {}

Mapping::~Mapping() {
  absl::Status s = Reset();
  if (!s.ok()) COLO_LOG(ERROR) << "unmapping: " << s;
}

Mapping::Mapping(Mapping&& other) noexcept
    : backend_(std::exchange(other.backend_, nullptr)),
      address_(std::exchange(other.address_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    absl::Status s = Reset();
    if (!s.ok()) COLO_LOG(ERROR) << "unmapping: " << s;
    backend_ = std::exchange(other.backend_, nullptr);
    address_ = std::exchange(other.address_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

absl::Status Mapping::Reset() {
  if (address_ == nullptr) return absl::OkStatus();
  void* address = std::exchange(address_, nullptr);
  return backend_->UnmapRange(address, std::exchange(bytes_, 0));
}

// -------------------------------------------------------------- DeviceBackend
absl::Status DeviceBackend::ExchangePages(void* a, void* b, size_t bytes) {
  return absl::UnimplementedError(
      absl::StrCat("the ", kind(), " backend cannot exchange pages"));
}

absl::StatusOr<Reservation> DeviceBackend::Reserve(size_t bytes) {
  absl::Status s = CheckGranular(*this, bytes, "Reserve");
  if (!s.ok()) return s;
  absl::StatusOr<void*> base = ReserveAddressRange(bytes);
  if (!base.ok()) return base.status();
  return Reservation(this, *base, bytes);
}

absl::StatusOr<PhysicalAllocation> DeviceBackend::CreateChunk(size_t bytes) {
  absl::Status s = CheckGranular(*this, bytes, "CreateChunk");
  if (!s.ok()) return s;
  absl::StatusOr<PhysicalHandle> handle = CreatePhysical(bytes);
  if (!handle.ok()) return handle.status();
  return PhysicalAllocation(this, *handle, bytes);
}

absl::StatusOr<Mapping> DeviceBackend::Map(void* address,
                                           const PhysicalAllocation& chunk) {
  if (!chunk.valid()) {
    return absl::InvalidArgumentError("Map: invalid physical allocation");
  }
  absl::Status s = MapPhysical(address, chunk.bytes(), chunk.handle());
  if (!s.ok()) return s;
  return Mapping(this, address, chunk.bytes());
}

size_t DeviceBackend::RoundUp(size_t bytes) const {
  const size_t g = granularity();
  return (bytes + g - 1) / g * g;
}

}  // namespace engine
}  // namespace colo
